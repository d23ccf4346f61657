"""One sampler at a time: a shard's turn on the device, so the next shard samples while this one finishes.

A shard's tail (its last batches' encode/embed/guard stages, the decision
against earlier rows, the Parquet write) is CPU and disk work. Run shard by
shard, the device would sit idle for that tail at every shard boundary:
~1-4% of a GPU job at the default 256-image shard, most of it for a 1-4-step
model. The flow runs two shards at once instead; each takes the sampler's
turn before its first batch and gives it back after its last, so sampling
never overlaps sampling and the device goes straight from one shard to the
next. Outputs do not depend on this: every shard is a pure function of its
plan, and the driver decides in plan order (``flows.job.decisions``).
"""

from __future__ import annotations

import threading


class SamplingStopped(BaseException):
    """The flow was interrupted (Ctrl-C): a shard in flight stops at its next batch.

    A ``BaseException``, like the ``KeyboardInterrupt`` it stands for, so the
    shard task is not retried: nothing of the shard is written, and a rerun
    redoes it.
    """


class SamplerTurn:
    """One shard's turn on a shared sampler lock: taken before its first batch, given back after its last.

    ``started`` is set once the shard holds the turn, or once it ended
    without taking it (reused, failed): the flow waits on it before handing
    the next shard its turn, which keeps sampling in plan order. ``stop``
    (shared by the flow's turns) is set when the flow is interrupted: a
    shard waiting for the sampler, or between two batches, then raises
    ``SamplingStopped`` instead of finishing a shard nobody waits for; one
    that waits for earlier shards' decisions stages itself at once.
    """

    def __init__(self, sampler: threading.Lock, stop: threading.Event | None = None) -> None:
        self._sampler = sampler
        self._held = False
        self.started = threading.Event()
        self.stop = stop or threading.Event()

    def take(self) -> None:
        """Wait for the sampler, then hold it.

        A shard that failed while sampling still holds it: its retry goes on
        with it, before the next shard, as in a sequential loop. Whoever runs
        the shard gives it back once the shard is done for good
        (``flows.executors.local``: when its shard ends).
        """
        if not self._held:
            while not self._sampler.acquire(timeout=0.1):
                self.check()
            self._held = True
        self.started.set()
        self.check()

    def check(self) -> None:
        """Raise ``SamplingStopped`` if the flow was interrupted."""
        if self.stop.is_set():
            raise SamplingStopped("the run was interrupted")

    def give_back(self) -> None:
        """Release the sampler if held; idempotent, and safe on every exit path."""
        if self._held:
            self._held = False
            self._sampler.release()
        self.started.set()
