"""Terminal progress for long jobs (rich), fed by the engine's per-batch callback.

The flow runs tasks in this process, so a module-level hook is enough; when
no display is active (tests, workers) the callback does nothing.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)
_progress: Progress | None = None
_task = None
_t0 = 0.0
_done = 0
_shards = [0, 0]  # done, total


@contextmanager
def display(total: int, description: str, shards: int = 0) -> Iterator[None]:
    """Show a progress bar with images and shards done, images/s and ETA while the block runs."""
    global _progress, _task, _t0, _done
    _shards[:] = [0, shards]
    _progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[shards]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    _task = _progress.add_task(description, total=total, rate="", shards=_shard_text())
    _t0, _done = time.perf_counter(), 0
    with _progress:
        try:
            yield
        finally:
            _progress, _task = None, None


def advance(n: int) -> None:
    """Count ``n`` more images sampled."""
    global _done
    progress, task = _progress, _task  # read once: shard threads call this while display() may end
    if progress is None:
        return
    _done += n
    rate = _done / max(time.perf_counter() - _t0, 1e-9)
    progress.update(task, advance=n, rate=f"{rate:6.1f} img/s")


def _shard_text() -> str:
    return f"shards {_shards[0]}/{_shards[1]}" if _shards[1] else ""


def shard_done(images: int = 0) -> None:
    """Count one more shard finished; ``images`` it had that were not sampled here (reused from a crash)."""
    if _progress is None:
        return
    _shards[0] += 1
    _progress.update(_task, advance=images, shards=_shard_text())

