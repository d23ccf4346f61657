"""Naming a process so that it can later be told alive or gone: its pid plus its start time.

A pid alone may name a newer process once the first has exited; the start
time (to the millisecond, as psutil reports it) tells them apart. Used for
the owners of MLflow runs (``flows.dead_runs``) and of temporary Prefect
servers (``flows.prefect_server``). Before a process is signalled, more is
checked (``is_same_process``): a pid and a start time can be copied into a
record by anyone who can write the data folder, so the command line the
process was started with, and chosen environment variables, must match too.
"""

from __future__ import annotations

import os
import signal
import subprocess


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


def command_line(pid: int | None = None) -> list[str]:
    """The command line process ``pid`` (default: this one) was started with."""
    import psutil

    return psutil.Process(pid or os.getpid()).cmdline()


def is_same_process(pid: int, started_at: str | None, cmdline: list[str], environ: dict[str, str]) -> bool:
    """Whether ``pid`` is alive and is the process recorded: same start time, same command line, and each
    variable of ``environ`` set to the given value in its environment. A process whose command line or
    environment cannot be read (another user's) is not the one recorded."""
    import psutil

    if not is_alive(pid, started_at):
        return False
    try:
        proc = psutil.Process(pid)
        if proc.cmdline() != cmdline:
            return False
        env = proc.environ() if environ else {}
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return all(env.get(k) == v for k, v in environ.items())


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop the process group ``proc`` leads (started with ``start_new_session``): SIGTERM, then SIGKILL
    after ``timeout`` seconds. A process that already ended is left alone."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
