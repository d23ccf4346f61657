"""Naming a process so that it can later be told alive or gone: its pid plus its start time.

A pid alone may name a newer process once the first has exited; the start
time (to the millisecond, as psutil reports it) tells them apart. Used for
the owners of MLflow runs (``flows.dead_runs``) and of temporary Prefect
servers (``flows.prefect_server``).
"""

from __future__ import annotations

import os


def started(pid: int | None = None) -> str:
    """The start time of process ``pid`` (default: this one), as recorded beside its pid."""
    import psutil

    return f"{psutil.Process(pid or os.getpid()).create_time():.3f}"


def is_alive(pid: int, started_at: str | None) -> bool:
    """Whether ``pid`` still names the process that started at ``started_at`` (a zombie counts as gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return f"{proc.create_time():.3f}" == started_at and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
