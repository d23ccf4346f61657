"""A folder's content as one hash: every path, file type and byte under it."""

from __future__ import annotations

import hashlib
from pathlib import Path


def tree_hash(root: Path) -> str:
    """sha256 over the sorted relative paths under ``root`` and each file's bytes (a missing root hashes too)."""
    h = hashlib.sha256()
    if not root.exists():
        return h.hexdigest()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        kind = "d" if path.is_dir() else "f"
        h.update(f"{kind}:{rel}\0".encode())
        if kind == "f":
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
