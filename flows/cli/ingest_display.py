"""What ``synthgen ingest`` shows: a progress bar with rate and ETA on a terminal, then a summary.

The library reports through a callback (``catalog.ingest.IngestProgress``); only this layer knows Rich.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from catalog.ingest import IngestProgress
from catalog.manifest import Manifest


@contextmanager
def ingest_progress(console: Console, what: str) -> Iterator[tuple[Callable[[IngestProgress], None], list]]:
    """(callback for ``ingest_folder``, a list holding the last state seen); a bar only on a terminal."""
    last: list[IngestProgress] = []

    def keep(s: IngestProgress) -> None:
        last[:] = [s]

    if not console.is_terminal:  # a pipe or a log: the summary alone
        yield keep, last
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[note]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                   console=console, transient=True)
    task = bar.add_task(f"ingest {escape(what)}", total=None, note="starting")

    def update(s: IngestProgress) -> None:
        keep(s)
        rate = s.done / max(s.elapsed, 1e-9)
        note = f"{rate:,.0f} img/s, {s.bad} bad" + (" (checking the rest)" if s.checking else "")
        bar.update(task, total=s.files, completed=s.done, note=note)

    with bar:
        yield update, last


def summary(console: Console, m: Manifest, s: IngestProgress | None, name: str, embedder: str,
            shard_bytes: int) -> None:
    """The ingest's outcome: images, bad files, rate, bytes read and written."""
    skipped = len(m.prov.get("skipped", []))
    console.print(f"ingested {m.rows} real images into [bold]{escape(name)}@{m.version}[/] ({escape(embedder)})"
                  + (f"; skipped {skipped} unreadable file(s)" if skipped else ""))
    if s is None or s.already_committed:
        console.print("  (this ingest was already committed: nothing to do)")
        return
    console.print(f"  {s.images} images, {s.bad} bad files, {s.done / max(s.elapsed, 1e-9):,.1f} img/s over "
                  f"{s.elapsed:.1f} s; {s.source_bytes / 1e6:,.1f} MB of image files read, {len(m.shards)} shard(s) "
                  f"of {shard_bytes / 1e6:,.1f} MB written" + (f"; {s.reused_shards} shard(s) reused from an "
                                                               "earlier run" if s.reused_shards else ""),
                  markup=False, highlight=False)
