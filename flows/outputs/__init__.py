"""What a version is turned into for people and other tools: exports, content credentials, reports."""
