"""The temporary Prefect server of a plain ``synthgen run`` / ``demo``: started early, and deaf to Ctrl-C.

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
"""

from __future__ import annotations

import signal
import threading


def start_in_background() -> threading.Thread:
    """Start the temporary server in a daemon thread; join it before running a flow.

    Does nothing when a server is configured (``PREFECT_API_URL``). A failed
    start is left to the flow, which starts the server again and reports the error.
    """

    def start() -> None:
        from prefect.settings import get_current_settings

        if get_current_settings().api.url:
            return
        from prefect.server.api.server import SubprocessASGIServer

        # Only this thread's mask: the main thread still takes the interrupt.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            SubprocessASGIServer().start()
        except Exception:  # noqa: BLE001 - the flow starts it again and reports the error
            pass

    thread = threading.Thread(target=start, name="synthgen-prefect-server", daemon=True)
    thread.start()
    return thread
