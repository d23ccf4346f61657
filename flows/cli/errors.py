"""One error path for every ``synthgen`` command.

An expected error (a bad spec, an unknown reference, an unreadable file, a
conflict, a bad URL) prints one line, ``error: <what is wrong and how to fix
it>``, and exits 2: no traceback. ``--debug`` or ``SYNTHGEN_DEBUG=1`` shows
the traceback as well. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import sys

import typer
from rich.markup import escape
from typer.core import TyperGroup

from flows.cli.output import make_console

try:  # Typer vendors its own copy of click (typer._click); its parser raises these, not click's own
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # a Typer that uses the click package
    from click.exceptions import NoArgsIsHelpError, UsageError

DEBUG_ENV = "SYNTHGEN_DEBUG"
EXIT_USER_ERROR = 2


def debug_enabled() -> bool:
    """True when ``--debug`` was given or ``$SYNTHGEN_DEBUG`` is set to a true value."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# The project's user-facing error types, by module. An error can only be an instance of a class whose
# module was imported, so modules not yet imported are skipped: reporting never imports torch or prefect.
_OWN = (
    ("catalog.store", "CatalogError"), ("catalog.ingest", "IngestError"), ("synthgen.spec", "SpecError"),
    ("synthgen.generators", "GeneratorError"), ("synthgen.imaging", "ImageReadError"),
    ("synthgen.model_check", "ModelCheckError"), ("flows.schedule", "ScheduleError"),
    ("catalog.safe_paths", "UnsafePathError"), ("flows.executors.ray_address", "RayClusterError"),
)


def _own_errors() -> tuple[type[BaseException], ...]:
    return tuple(getattr(sys.modules[m], c) for m, c in _OWN if m in sys.modules)


def _foreign_errors() -> tuple[type[BaseException], ...]:
    """Errors from Python and libraries that mean bad input or environment, not a bug in synthgen."""
    foreign: list[type[BaseException]] = [OSError, UnicodeError, ValueError]
    foreign += [getattr(sys.modules[m], c) for m, c in (("yaml", "YAMLError"), ("duckdb", "Error")) if m in sys.modules]
    return tuple(foreign)


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected error, or None when ``exc`` is a bug."""
    if isinstance(exc, _own_errors()):
        return str(exc)
    if isinstance(exc, _foreign_errors()):
        text = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
        return f"{text} ({type(exc).__name__}; rerun with --debug or {DEBUG_ENV}=1 for the traceback)"
    return None


INTERRUPTED = "interrupted; committed versions are intact, rerun the same command to resume"
TERMINATED = "terminated (SIGTERM); committed versions are intact, rerun the same command to resume"
EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler, ``kill``, a container stopping): the command unwinds as for Ctrl-C.

    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception``
    swallows it. Unwinding, not dying on the signal, is what lets the exit
    path run: above all Prefect's atexit stop of its temporary server, which
    outlived a terminated run before.
    """


def raise_on_sigterm() -> None:
    """Make SIGTERM raise ``Terminated`` in the main thread (call it from the main thread, at start).

    A flow run swaps in Prefect's own handler, which crashes the flow run
    and then re-sends the signal to this handler, so the command still ends
    through ``Terminated``.
    """

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _print_error(message: str) -> None:
    make_console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")


GROUP_OPTIONS = ("--data-dir", "-d")  # the data folder: an option of synthgen itself, given before the command


def usage_error(exc: UsageError) -> None:
    """Report a usage error caught by click (a bad option value, a missing argument, an unknown option or command).

    One ``error:`` line and exit 2, as for every other bad input, instead of
    Typer's boxed usage panel. ``synthgen`` alone still prints the help.
    """
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    text = "; ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    if getattr(exc, "option_name", None) in GROUP_OPTIONS and exc.ctx is not None and exc.ctx.parent is not None:
        # The data folder is the group's option, for every command alike: say where it goes.
        where = f": it goes before the command, 'synthgen {exc.option_name} DIR {exc.ctx.info_name} ...'{where}"
    _print_error(f"{text.rstrip('.')}{where}")
    raise typer.Exit(EXIT_USER_ERROR)


class SynthgenGroup(TyperGroup):
    """The command group: runs the chosen command and turns expected errors into one message."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the group's own options (`--data-dir` without a value, an unknown one before the command)
            return super().make_context(info_name, args, parent, **extra)
        except UsageError as exc:
            usage_error(exc)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UsageError as exc:  # the command's arguments and options, parsed here
            usage_error(exc)
        except KeyboardInterrupt:
            # Here, not in the entry point: click turns an interrupt that gets past the command into
            # a bare exit 130 ("Aborted"), and the user would not learn that nothing was lost.
            make_console(stderr=True, soft_wrap=True).print(INTERRUPTED)
            raise SystemExit(130) from None
        except Terminated:
            make_console(stderr=True, soft_wrap=True).print(TERMINATED)
            raise SystemExit(EXIT_TERMINATED) from None
        except BrokenPipeError:
            # The reader went away (`synthgen ... | head`): stop quietly, as Python's docs advise;
            # stdout goes to devnull so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except Exception as exc:  # noqa: BLE001 - classified below; bugs are re-raised untouched
            message = None if debug_enabled() else describe(exc)
            if message is None:
                raise
            _print_error(message)
            raise typer.Exit(EXIT_USER_ERROR) from None
