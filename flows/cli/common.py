"""What every ``synthgen`` command shares: the Typer app, consoles, data folder, errors."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TypeVar

import typer
from rich.markup import escape

from catalog.files import catalog_url
from flows.cli.errors import DEBUG_ENV, SynthgenGroup, debug_enabled
from flows.cli.output import err, out
from flows.settings import CATALOG_ENV, DATA_ENV, DataFolderError, Paths, Settings, configure, resolve_paths

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic image datasets with provenance.",
                  cls=SynthgenGroup, pretty_exceptions_show_locals=False)
# Output that is not a terminal (a pipe, a file, a test) is read by tools: never wrap or fold it.
NO_WRAP_WIDTH = 100_000
JSON_HELP = "Print the result as one JSON document on stdout (for scripts)."
# `synthgen --help` groups the commands by what a user is doing (Typer's rich_help_panel), in this order.
GENERATE, INSPECT, AUDIT, SHARE, SCHEDULE = "Generate", "Inspect and load", "Audit", "Share", "Schedule and monitor"


# The commands that may start a new data folder; every other one needs an existing one, so a
# mistyped --data-dir is named instead of created (and a read leaves nothing behind).
STARTS_DATA_FOLDER = frozenset({"run", "ingest", "demo", "pull", "schedule"})
# Every command works with a catalog at a URL (--catalog s3://...) but these, which copy between the local
# catalog and a shared one or set up a catalog of their own: at a URL there is no local catalog for them. What is
# derived from versions (vector and id indexes, guards, grids, cards, the web app's caches) is kept in the
# data folder, and a work pool's workers stage shards on the store.
NEEDS_LOCAL_CATALOG = {
    "push": "copies the local catalog's versions to the URL given as its argument",
    "pull": "copies the versions at the URL given as its argument into the local catalog",
    "demo": "builds its own catalog in the data folder",
}



class _State:
    data_dir: Optional[str] = None
    catalog: Optional[str] = None  # --catalog / $SYNTHGEN_CATALOG; None: the data folder's catalog/
    create: bool = False  # the invoked command is in STARTS_DATA_FOLDER


def cli_paths(resolve_only: bool = False) -> Paths:
    """The data folder's paths, configured (``resolve_only``: only resolved, nothing created or configured)."""
    settings = Settings(catalog=_State.catalog) if _State.catalog is not None else None
    try:
        if resolve_only:
            return resolve_paths(_State.data_dir, settings)
        return configure(_State.data_dir, settings, create=_State.create)
    except DataFolderError as exc:  # empty, or missing for a command that only reads
        fail(str(exc))
    except OSError as exc:  # a file, or a folder we may not write
        fail(f"--data-dir {exc.filename or _State.data_dir}: cannot hold the data folder ({exc.strerror or exc}); "
              f"give a writable folder (or set ${DATA_ENV})")


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


@contextmanager
def failing_on(*errors: type[Exception]) -> Iterator[None]:
    """Turn the given (user-facing) errors into a clear message and exit code 2 (the traceback with --debug)."""
    try:
        yield
    except errors as exc:
        if debug_enabled():
            raise
        fail(str(exc))


T = TypeVar("T")


def interruptibly(work: Callable[[], T], interrupt: Callable[[], object]) -> T:
    """``work()`` in a worker thread; Ctrl-C or SIGTERM in the main thread calls ``interrupt()`` and re-raises.

    A library call that runs for minutes in C (a DuckDB query) may look at
    signals only between steps, or never: Ctrl-C then waited for the query's
    end. The main thread only waits here, so the signal arrives at once, and
    ``interrupt`` (``DuckDBPyConnection.interrupt``) stops the work.
    """
    result: dict[str, object] = {}
    # Our own flag, not ``Thread.is_alive``: a ``join`` that a KeyboardInterrupt cut short leaves the
    # thread reported dead while it runs on (CPython 3.11).
    done = threading.Event()

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name="synthgen-interruptible", daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except BaseException:
        # Again until the work ends: an interrupt that comes before the query starts is lost. Never wait
        # long for it (a daemon thread).
        for _ in range(50):
            interrupt()
            if done.wait(0.1):
                break
        raise
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result["value"]  # type: ignore[return-value]


def _unwrapped_when_piped() -> None:
    for console in (out, err):
        if not console.is_terminal:
            console.soft_wrap = True
            console.width = NO_WRAP_WIDTH


@app.callback()
def main(
    ctx: typer.Context,
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", "-d", envvar=DATA_ENV, help="All state lives here (default ./synthgen-data)."
    ),
    catalog: Optional[str] = typer.Option(
        None, "--catalog", envvar=CATALOG_ENV,
        help="The catalog: a folder or s3://bucket/prefix (default DATA_DIR/catalog; S3 endpoint from "
             "$AWS_ENDPOINT_URL, credentials as for any AWS client).",
    ),
    debug: bool = typer.Option(False, "--debug", help=f"Show tracebacks of expected errors too (or ${DEBUG_ENV}=1)."),
) -> None:
    if catalog is not None and not catalog.strip():
        fail(f"--catalog is empty: name the catalog (a folder or s3://bucket/prefix), or leave it out "
             f"(then ${CATALOG_ENV}, else DATA_DIR/catalog)")
    command = ctx.invoked_subcommand
    if catalog is not None and catalog_url(catalog) and command in NEEDS_LOCAL_CATALOG:
        fail(f"`synthgen {command}` {NEEDS_LOCAL_CATALOG[command]}, so it needs a local catalog, not {catalog}: "
             f"leave out --catalog and ${CATALOG_ENV}")
    _State.data_dir = data_dir
    _State.catalog = catalog
    _State.create = ctx.invoked_subcommand in STARTS_DATA_FOLDER
    if debug:
        os.environ[DEBUG_ENV] = "1"
    _unwrapped_when_piped()


def open_catalog():
    from catalog import Catalog

    paths = cli_paths()
    return Catalog(paths.catalog, cache=paths.cache)


def print_json(data) -> None:
    """Write ``data`` to stdout as one JSON document (no markup, no wrapping): for ``--json`` flags."""
    import json
    import sys

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def check_status(status: str) -> str:
    """A ``--status`` value: 'all' or one of the row statuses; anything else is named with the choices."""
    from synthgen.records import STATUSES

    if status != "all" and status not in STATUSES:
        fail(f"--status {status!r}: use 'all' or one of {', '.join(STATUSES)}")
    return status


def check_options(model: type, options: dict[str, object]) -> None:
    """Validate CLI options against the pydantic model whose fields they set (same bounds as a job spec).

    ``options`` maps each model field to its value (None: not given); a bad
    value is reported as the option (``--real-threshold``), with the bound.
    """
    from pydantic import ValidationError

    given = {k: v for k, v in options.items() if v is not None}
    try:
        model.model_validate(given)
    except ValidationError as exc:
        problems = [f"--{str(e['loc'][0]).replace('_', '-')} {given.get(str(e['loc'][0]))!r}: {e['msg']}"
                    for e in exc.errors() if e["loc"]]
        fail("; ".join(problems) or str(exc))
