"""The CLI's shared helpers: interrupting long library calls."""

import _thread
import signal
import threading

import pytest

from flows.cli.common import interruptibly


def test_an_interrupt_that_comes_before_the_work_starts_still_stops_it():
    started, stopped = threading.Event(), threading.Event()

    def work():  # like a DuckDB query: an interrupt counts only once the query runs
        started.wait(30)
        stopped.wait(30)
        return "ran to the end" if not stopped.is_set() else "stopped"

    def interrupt():
        if started.is_set():
            stopped.set()
        started.set()  # the first interrupt comes before the work started: it is lost

    # As from a terminal: a test run started in the background ignores SIGINT, and interrupt_main then does nothing.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.05, _thread.interrupt_main).start()  # Ctrl-C while the main thread waits
        with pytest.raises(KeyboardInterrupt):
            interruptibly(work, interrupt)
    finally:
        signal.signal(signal.SIGINT, before)
    assert stopped.is_set()
