"""Named failure points for crash and retry tests (off unless an env var names one).

``SYNTHGEN_FAILPOINT="<name>[@<n>][:kill|:kill-once|:raise|:raise-always|:interrupt|:terminate|:hang]"`` makes the
``n``-th time the process passes ``failpoint(name)`` (default the first)
either SIGKILL the process (``kill``, the default: nothing gets to clean
up, exactly like a machine losing power; ``kill-once``: only the first
process of all those given the same ``$SYNTHGEN_FAILPOINT_ONCE`` file, which
it creates: one machine of a fleet dies once), raise ``InjectedFailure`` once
(``raise``: a transient error), raise on that hit and every later one
(``raise-always``: a shard that keeps failing), or send a signal and
hold the thread that hit it for ``INTERRUPT_HOLD_S`` before it goes on:
SIGINT (``interrupt``: a user's Ctrl-C, sent to the whole process group,
as a terminal does, when this process leads one) or SIGTERM to this
process (``terminate``: ``kill``, a scheduler or a container stopping), or hold the thread that hit it
for ever (``hang``: a GPU that stops answering; with ``$SYNTHGEN_FAILPOINT_ONCE`` set it first creates
that file, so a test knows the process is there and can kill its machine). With the variable unset a
failpoint is one dictionary lookup.

The crash tests (tests/flows/test_resume.py) run whole jobs in a subprocess
with each point set, then check that a rerun finishes with identical output.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

ENV = "SYNTHGEN_FAILPOINT"
ONCE_ENV = "SYNTHGEN_FAILPOINT_ONCE"  # kill-once: the marker file that the killed process creates

# Where the pipeline can be stopped, in the order a job passes them.
POINTS = (
    "sampling",          # after a batch is sampled, before it is post-processed
    "parquet-write",     # a Parquet file (staged or final shard) at its temp name, not yet renamed
    "shard-files",       # a decided shard's final shards in place, its decision record not yet
    "before-commit",     # every shard decided (final shards written), version manifest not yet
    "publish",           # decisions checked against the head, the publish (lock, manifest, HEAD) not yet
    "manifest-written",  # manifest in place, HEAD not yet moved
    "finishing",         # version committed; reports and MLflow logging under way
    "ingest-shard",      # ingest: a shard's files and record staged (rows not yet in the catalog)
    "push-objects",      # push: a version's shards and segments uploaded, its manifest not yet created
    "push-manifests",    # push: the new manifests created on the object store, HEAD not yet moved
)

# Why the hold: a real batch takes seconds on a GPU, so a Ctrl-C lands mid-batch and the main thread
# takes it long before the batch ends. The tiny test models sample a batch in milliseconds: without the
# hold, a shard thread could finish its shard before a busy CI machine's main thread even ran the
# handler, and a test could not tell a shard that stops at its next batch from one that runs on.
INTERRUPT_HOLD_S = 3.0

_hits: Counter[str] = Counter()
_lock = threading.Lock()


class InjectedFailure(RuntimeError):
    """An error raised on purpose by a failpoint."""


def _parse(value: str) -> tuple[str, int, str]:
    target, _, action = value.partition(":")
    name, _, nth = target.partition("@")
    if name not in POINTS:
        raise ValueError(f"{ENV}={value!r}: unknown failpoint {name!r} (known: {', '.join(POINTS)})")
    if action == "kill-once" and not os.environ.get(ONCE_ENV):
        raise ValueError(f"{ENV}={value!r}: kill-once needs ${ONCE_ENV}, the marker file its first process creates")
    return name, int(nth or 1), action or "kill"


def after_reused(value: str, reused: int) -> str:
    """``value`` for a run that resumes ``reused`` shards an earlier run finished, to stop at the same place.

    A point passed once per shard (or batch, or file) a run works on counts only the shards that run
    works on: ``shard-files@7`` (the 7th shard of the plan) is ``shard-files@3`` in a run that reuses
    4. A point given without ``@n`` is unchanged (the first hit, whatever was reused).
    """
    target, sep, action = value.partition(":")
    name, at, nth = target.partition("@")
    if not at:
        return value
    if int(nth) <= reused:
        raise ValueError(f"{value!r}: the place it names is in the {reused} reused shard(s)")
    return f"{name}@{int(nth) - reused}{sep}{action}"


def failpoint(name: str, detail: str = "") -> None:
    """Stop here if ``$SYNTHGEN_FAILPOINT`` names this point and its hit count is reached."""
    value = os.environ.get(ENV)
    if not value:
        return
    target, nth, action = _parse(value)
    if target != name:
        return
    with _lock:
        _hits[name] += 1
        hit = _hits[name]
    if hit == nth and action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if hit == nth and action == "kill-once":
        if _first_of_all(os.environ[ONCE_ENV]):
            os.kill(os.getpid(), signal.SIGKILL)
        return
    if hit == nth and action == "hang":
        if os.environ.get(ONCE_ENV):
            _first_of_all(os.environ[ONCE_ENV])
        while True:
            time.sleep(3600)
    if action in ("interrupt", "terminate"):
        if hit == nth:
            _signal(action)
        return
    if hit == nth or (hit > nth and action == "raise-always"):
        raise InjectedFailure(f"injected failure at {name} (hit {hit}){': ' + detail if detail else ''}")


def _first_of_all(marker: str) -> bool:
    """Create ``marker``; False when another process did first."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def _signal(action: str) -> None:
    if action == "terminate":
        os.kill(os.getpid(), signal.SIGTERM)
    elif os.getpgrp() == os.getpid():  # the test started us as a group leader: what a terminal's Ctrl-C reaches
        os.killpg(os.getpgrp(), signal.SIGINT)
    else:  # never the group of whoever started us (a test runner)
        os.kill(os.getpid(), signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        time.sleep(INTERRUPT_HOLD_S)  # the main thread raises meanwhile
