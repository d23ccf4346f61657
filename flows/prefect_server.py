"""The temporary Prefect server of a plain ``synthgen run`` / ``demo``: started early, deaf to Ctrl-C, never orphaned for long.

With no server configured, Prefect starts a temporary one (a uvicorn
subprocess) when the first flow runs, and waits ~10 s for it. Starting it
earlier lets other start-up work overlap; the flow then finds it running
(it is Prefect's own per-process singleton, stopped at exit).

Ctrl-C in a terminal sends SIGINT to the whole foreground process group,
the server included. The server then died at once while synthgen was still
stopping its flow: every state update and log after that retried against
a dead port, for minutes, and the run ended in a traceback and exit 1
instead of "interrupted" and 130. So the server is spawned with SIGINT
blocked (a child inherits its parent thread's signal mask through exec):
only synthgen takes the Ctrl-C, and Prefect stops the server at exit
(SIGTERM, which stays unblocked).

A synthgen killed outright (SIGKILL, OOM) cannot stop its server. Each
start records the server's pid beside its owner's in the data folder's
Prefect home; the next run there stops a server whose owner is gone. A
record is data anyone who can write the folder can plant: before stopping
it, the named process must be that server (``_is_our_server``): the same
start time and command line as recorded, a command line that runs Prefect's
server app, and this data folder in its environment.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from flows.processes import command_line, is_alive, is_same_process, started
from flows.settings import DATA_ENV

RECORDS = "temporary-servers"  # under PREFECT_HOME: <server pid>.json, {server: [pid, start time, cmdline], owner}
SERVER_APP = "prefect.server.api.server:create_app"  # in the command line of Prefect's temporary server
_started: threading.Thread | None = None  # one start per process: `demo` starts it early, then runs `run`'s path
# Set once the server thread has defined Prefect's ORM classes (or decided not to start a server).
_orm_defined = threading.Event()


def start_in_background(prefect_home: Path) -> threading.Thread:
    """Stop servers orphaned by killed runs, then start this run's in a daemon thread; join it before a flow runs.

    Does nothing when a server is configured (``PREFECT_API_URL``). A failed
    start is left to the flow, which starts the server again and reports the error.
    """
    global _started
    if _started is not None:
        return _started
    records = Path(prefect_home) / RECORDS

    def start() -> None:
        try:
            from prefect.settings import get_current_settings

            if get_current_settings().api.url:
                return
            import prefect.server.database.orm_models  # noqa: F401 - every ORM class, before MLflow maps its own
            from prefect.server.api.server import SubprocessASGIServer
        finally:
            _orm_defined.set()

        stop_orphans(records)
        # Only this thread's mask: the main thread still takes the interrupt.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            server = SubprocessASGIServer()
            server.start()
        except Exception:  # noqa: BLE001 - the flow starts it again and reports the error
            return
        if server.server_process is not None:
            write_record(records, server.server_process.pid)

    _started = threading.Thread(target=start, name="synthgen-prefect-server", daemon=True)
    _started.start()
    return _started


def server_orm_defined(timeout: float = 120) -> None:
    """Wait until the server thread this process started (if any) has defined Prefect's ORM classes.

    Opening MLflow's SQLite store configures every SQLAlchemy mapper in the
    process; doing that while the server thread was still defining Prefect's
    classes failed at random (``InvalidRequestError: ... 'Deployment' failed to
    locate a name``). MLflow's warm-up waits on this first.
    """
    if _started is not None:
        _orm_defined.wait(timeout)


def process_identity(pid: int) -> list:
    """(pid, start time) of a process: names it even after the pid is reused."""
    return [pid, started(pid)]


def _alive(identity: list) -> bool:
    return is_alive(identity[0], identity[1])


def write_record(records: Path, server_pid: int) -> None:
    records.mkdir(parents=True, exist_ok=True)
    tmp = records / f".{server_pid}.json.tmp"
    server = [*process_identity(server_pid), command_line(server_pid)]
    tmp.write_text(json.dumps({"server": server, "owner": process_identity(os.getpid())}))
    os.replace(tmp, records / f"{server_pid}.json")


def _is_our_server(server: list, environ: dict[str, str]) -> bool:
    """Whether the recorded ``[pid, start time, command line]`` names a live temporary Prefect server of ours.

    The command line must be Prefect's server app and equal to the recorded
    one, the start time equal too, and ``environ`` (this data folder) set in
    its environment: a planted record naming any other process, or another
    data folder's server, is never signalled.
    """
    if len(server) != 3 or not isinstance(server[0], int) or not isinstance(server[2], list):
        return False  # a record from before command lines were kept, or not one of ours
    cmdline = server[2]
    if SERVER_APP not in cmdline or not any("uvicorn" in part for part in cmdline):
        return False
    return is_same_process(server[0], server[1], cmdline, environ)


def stop_orphans(records: Path, environ: dict[str, str] | None = None) -> list[int]:
    """Stop each recorded server whose owner process is gone; forget the records of servers that are gone.

    Returns the pids stopped. Same machine only, as the records are (the data
    folder's Prefect home); a record that cannot be read is left alone. A
    record whose process is not that server (``_is_our_server``; ``environ``:
    the variables its environment must hold, by default this data folder's
    ``$SYNTHGEN_DATA``) is forgotten, and nothing is signalled.
    """
    import psutil

    if environ is None:
        environ = {DATA_ENV: os.environ[DATA_ENV]} if os.environ.get(DATA_ENV) else {}
    stopped = []
    for path in sorted(records.glob("*.json")) if records.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
            server, owner = rec["server"], rec["owner"]
            ours, owner_alive = _is_our_server(server, environ), _alive(owner)
        except (OSError, ValueError, KeyError, TypeError, IndexError, OverflowError, psutil.Error):
            continue  # not a record this code wrote
        if ours and owner_alive:
            continue  # a run in progress (this folder's, or one started beside it)
        if ours:
            proc = psutil.Process(server[0])
            proc.terminate()
            try:
                proc.wait(5)
            except psutil.TimeoutExpired:
                proc.kill()
            stopped.append(server[0])
        path.unlink(missing_ok=True)
    return stopped
