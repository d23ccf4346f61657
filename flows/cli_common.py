"""What every ``synthgen`` command shares: the Typer app, consoles, data folder, errors."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.console import Console

from flows.settings import DATA_ENV, Paths, configure

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic image datasets with provenance.")
out = Console()
err = Console(stderr=True)


class _State:
    data_dir: Optional[str] = None


def _paths() -> Paths:
    return configure(_State.data_dir)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given (user-facing) errors into a clear message and exit code 2."""
    try:
        yield
    except errors as exc:
        _fail(str(exc))


@app.callback()
def main(
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", "-d", envvar=DATA_ENV, help="All state lives here (default ./synthgen-data)."
    ),
) -> None:
    _State.data_dir = data_dir


def _catalog():
    from catalog import Catalog

    return Catalog(_paths().catalog)
