"""The command line: one module per command group, registered on the Typer app by ``flows.cli.app``."""
