"""How every ``synthgen`` command prints: consoles, values, records and lists, one way for all.

Three rules, kept here so no command has to remember them:

- Data never drives the terminal. Names, prompts, ids and file names come
  from specs, images and pulled catalogs; an escape sequence in one could
  rewrite the screen or hide a line. Every console made here passes what it
  prints through ``clean`` (control characters shown as ``\\x1b``-style
  escapes), and prints no Rich markup or emoji codes found in data. JSON
  output (``--json``) is written by ``json.dumps``, which escapes them itself.
- Numbers read as written: values go through ``catalog.numbers.shortest_text``
  (``0.98``, not the float64 noise of a float32, ``0.9800000190734863``).
- A pipe or a file gets lines a tool can cut: a record is ``field: value``
  lines, a list is tab-separated with a header, never padded to the widest
  cell (as ``git`` and ``kubectl describe`` do). A terminal gets tables.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from rich.console import Console, ConsoleOptions, RenderHook, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from catalog.numbers import shortest_text

# C0 and C1 controls (ESC, CSI, BEL, ...), DEL, and the bidirectional overrides that reorder what is shown.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\t\n]")
TERMINAL_CELL_WIDTH = 60  # the widest a plain column gets in a terminal; a pipe gets whole values
MISSING = "-"


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, one_line: bool = False) -> str:
    """``text`` with every control character written as a visible escape (``\\x1b``); tabs and line breaks
    kept, unless ``one_line`` (a cell of a tab-separated line), where they are escaped too."""
    text = _CONTROL.sub(_escape, text)
    return _LINE_BREAKS.sub(_escape, text) if one_line else text


def show(value: object, one_line: bool = False) -> str:
    """A value as shown to people: numbers shortest (``shortest_text``), lists joined, None as ``-``, cleaned."""
    if value is None:
        return MISSING
    if isinstance(value, (list, tuple)):
        return (", " if one_line else "\n").join(show(v, one_line) for v in value) or MISSING
    return clean(shortest_text(value), one_line)


class _Cleaned:
    """A renderable printed with ``clean`` applied to every piece of text it renders (styles kept)."""

    def __init__(self, inner: object):
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for seg in console.render(self.inner, options):
            yield seg if seg.control else Segment(clean(seg.text), seg.style)


class _CleanAll(RenderHook):
    def process_renderables(self, renderables: list) -> list:
        return [_Cleaned(r) for r in renderables]


def make_console(stderr: bool = False, **options) -> Console:
    """A console that never prints data's control characters or emoji codes (every console of the CLI)."""
    console = Console(stderr=stderr, emoji=False, **options)
    console.push_render_hook(_CleanAll())
    return console


out = make_console()
err = make_console(stderr=True)


def say(text: str, console: Console | None = None) -> None:
    """Print a line of text as it is: no markup, no highlighting (data may hold ``[red]``), cleaned.

    Not to a terminal, the text is written as it is (cleaned): Rich would
    expand the tabs of tab-separated lines into spaces.
    """
    console = console or out
    if console.is_terminal:
        console.print(text, markup=False, highlight=False, emoji=False)
    else:
        console.file.write(clean(text) + "\n")
        console.file.flush()


def print_record(title: str, fields: Iterable[tuple[str, object]]) -> None:
    """One thing and its fields: a two-column table in a terminal; elsewhere the title, then ``field: value`` lines."""
    fields = list(fields)
    if out.is_terminal:
        t = Table(title=Text(title))
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for name, value in fields:
            t.add_row(Text(name), Text(show(value)))
        out.print(t)
        return
    say("\n".join([title, *(f"{name}: {show(value, one_line=True)}" for name, value in fields)]))


def print_rows(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], boxed: bool = True) -> None:
    """A list of things: a table in a terminal (``boxed``, else plain aligned columns clipped at
    ``TERMINAL_CELL_WIDTH``); elsewhere ``# title``, a header line and one tab-separated line per row."""
    rows = [[show(v, one_line=not out.is_terminal) for v in row] for row in rows]
    if not out.is_terminal:
        lines = ([f"# {title}"] if title else []) + ["\t".join(columns)] + ["\t".join(row) for row in rows]
        say("\n".join(lines))
        return
    if boxed:
        t = Table(title=Text(title) if title else None)
        for col in columns:
            t.add_column(Text(col), overflow="fold")
        for row in rows:
            t.add_row(*(Text(v) for v in row))
        out.print(t)
        return
    cells = [list(columns), *([v if len(v) <= TERMINAL_CELL_WIDTH else v[: TERMINAL_CELL_WIDTH - 3] + "..."
                               for v in (c.replace("\n", " ") for c in row)] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    say("\n".join(([title] if title else []) + ["  ".join(c.rjust(w) for c, w in zip(r, widths)).rstrip()
                                                for r in cells]))
