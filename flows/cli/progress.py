"""Terminal progress for long jobs (rich): images and shards done, images/s and ETA.

The CLI makes one ``TerminalProgress`` and hands it to the flow, which
feeds it from the executor's per-batch callback and the driver's per-shard
one; the flow itself never imports rich.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TerminalProgress:
    """A progress bar on stderr, shown while ``display`` runs; the callbacks do nothing outside it."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._bar: Progress | None = None
        self._task = None
        self._lock = threading.Lock()  # shard threads report batches while the driver reports shards
        self._t0, self._done, self._shards = 0.0, 0, [0, 0]

    @contextmanager
    def display(self, total: int, description: str, shards: int = 0) -> Iterator[None]:
        """Show the bar for ``total`` images in ``shards`` shards while the block runs."""
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[shards]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                       TextColumn("eta"), TimeRemainingColumn(), console=self.console, transient=False)
        self._shards = [0, shards]
        self._task = bar.add_task(description, total=total, rate="", shards=self.shard_text())
        self._t0, self._done = time.perf_counter(), 0
        with bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    def shard_text(self) -> str:
        return f"shards {self._shards[0]}/{self._shards[1]}" if self._shards[1] else ""

    def advance(self, n: int) -> None:
        """Count ``n`` more images sampled."""
        with self._lock:
            if self._bar is None:
                return
            self._done += n
            rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, advance=n, rate=f"{rate:6.1f} img/s")
            self.grow()

    def shard_done(self, images: int = 0) -> None:
        """Count one more shard finished; ``images`` of it not counted by ``advance`` (reused, or sampled elsewhere)."""
        with self._lock:
            if self._bar is None:
                return
            self._shards[0] += 1
            self._shards[1] = max(self._shards)
            self._bar.update(self._task, advance=images, shards=self.shard_text())
            self.grow()

    def grow(self) -> None:
        """Raise the total to what is done: a ``kept_per_condition`` job's plan grows past its first round."""
        task = self._bar.tasks[0] if self._bar and self._bar.tasks else None
        if task is not None and task.total is not None and task.completed > task.total:
            self._bar.update(self._task, total=task.completed)
