"""Several devices on one machine, no server: one worker process per device.

Each worker is started for one device, pins ``CUDA_VISIBLE_DEVICES`` to it
before torch touches CUDA, builds its components once (the executor's
setup) and then runs the shards the driver hands it, one at a time, sending
each shard's samples back; the driver decides them in plan order and writes
every image byte once. Each worker has its own pipe, so the driver always
knows which shard a worker holds: a worker that dies (out of memory,
killed) is replaced and its shard tried again, as a failed shard is (at
once: a device worker fails on its own device, not on a shared resource
that needs time to clear).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Iterator

from flows.executors.base import Retry
from flows.executors.dispatch import Dispatch
from flows.job.components import Setup
from flows.job.shard_step import ShardResult, ShardStep
from synthgen.plan import Shard
from synthgen.spec import JobSpec

POLL_S = 1.0


def pin(device: str) -> str:
    """Make ``device`` this process's only GPU (before torch touches CUDA); the device name to load on."""
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        return "cuda"  # the worker sees only its GPU: rows record the device as a one-GPU run does
    return device


def worker_main(device: str, share: int, setup: Setup, step: ShardStep, conn: Connection) -> None:
    """A device worker: build the components once, then run the shards the driver sends until it sends None."""
    try:
        parts = setup(pin(device), share)
    except Exception:  # noqa: BLE001 - reported to the driver, which stops the job
        conn.send(("setup", None, traceback.format_exc(limit=5)))
        return
    while (shard := conn.recv()) is not None:
        try:
            conn.send(("done", shard.index, step(shard, parts)))
        except Exception as exc:  # noqa: BLE001 - the driver decides whether to retry
            conn.send(("error", shard.index, f"{type(exc).__name__}: {exc}"))


@dataclass
class Worker:
    """A device's worker process, its end of the pipe, and the shard it holds."""

    device: str
    process: multiprocessing.Process
    conn: Connection
    shard: Shard | None = None


@dataclass
class DevicesExecutor:
    """One worker process per entry of ``devices`` (e.g. ``["cuda:0", "cuda:1"]``); shards back in plan order."""

    devices: list[str]
    retry: Retry = field(default_factory=Retry)
    # Keep the workers after a map call that delivered every shard, for the next call with the same step and
    # setup: the rounds of one job (``kept_per_condition``) then load their models once. Whoever sets it
    # calls ``close`` (``run_job`` does); off, every map call ends its workers, as before.
    keep_workers: bool = False
    kept: tuple[ShardStep, Setup, list[Worker]] | None = field(default=None, init=False, repr=False)

    def close(self) -> None:
        """End the workers kept from the last map call, if any."""
        if self.kept is not None:
            stop(self.kept[2])
            self.kept = None

    def reuse(self, step: ShardStep, setup: Setup) -> list[Worker] | None:
        """The kept workers, if they were started for ``step`` and ``setup`` and are all alive (else ended)."""
        kept, self.kept = self.kept, None
        if kept is not None and kept[0] is step and kept[1] is setup and all(w.process.is_alive() for w in kept[2]):
            return kept[2]
        if kept is not None:
            stop(kept[2])
        return None

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]:
        if not shards:  # nothing to run (a resumed round): no worker is started
            self.close()
            return
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or threads
        n = len(self.devices)

        def start(device: str) -> Worker:
            here, there = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(device, n, setup, step, there),
                            name=f"synthgen-device-{device}", daemon=True)
            p.start()
            there.close()  # the worker's end lives in the worker: its death closes the pipe here
            return Worker(device, p, here)

        workers = self.reuse(step, setup) or [start(d) for d in self.devices]
        dispatch = Dispatch(shards, n, self.retry)

        def turn(limit: int) -> None:
            self._hand_out(workers, dispatch, limit)
            self._collect(workers, dispatch, start)

        try:
            yield from dispatch.in_plan_order(turn)
        finally:
            if self.keep_workers and dispatch.all_delivered and all(w.shard is None for w in workers):
                self.kept = (step, setup, workers)
            else:
                stop(workers)

    @staticmethod
    def _hand_out(workers: list[Worker], dispatch: Dispatch, limit: int) -> None:
        """Give idle workers the next shards, up to plan index ``limit`` (retried shards first)."""
        for w in workers:
            if w.shard is None and w.process.is_alive() and (shard := dispatch.next(limit)) is not None:
                w.shard = shard
                w.conn.send(w.shard)

    @staticmethod
    def _collect(workers: list[Worker], dispatch: Dispatch, start) -> None:
        """Wait for a message or a death; file results, retry failed or lost shards, replace dead workers."""
        ready = set(wait([w.conn for w in workers] + [w.process.sentinel for w in workers], timeout=POLL_S))
        for i, w in enumerate(workers):
            if w.conn in ready:
                try:
                    kind, index, value = w.conn.recv()
                except (EOFError, OSError):  # died: handled below with its sentinel
                    kind = None
                if kind == "setup":
                    raise RuntimeError(f"device worker {w.device} could not load the job's components:\n{value}")
                if kind == "done":
                    dispatch.done(w.shard, value)
                    w.shard = None
                elif kind == "error":
                    dispatch.failed(w.shard, value)
                    w.shard = None
            if not w.process.is_alive():
                w.process.join()
                if w.shard is not None:
                    dispatch.failed(w.shard, f"its worker process died (exit {w.process.exitcode})")
                workers[i] = start(w.device)


def stop(workers: list[Worker]) -> None:
    """Tell each worker to end, then wait briefly for it (killed if it does not)."""
    for w in workers:
        try:
            w.conn.send(None)
        except OSError:
            pass
    for w in workers:
        w.process.join(timeout=5)
        if w.process.is_alive():
            w.process.kill()


def job_devices(spec: JobSpec) -> list[str]:
    """The devices to run shards on: ``generator.devices``, else every visible GPU when there are several
    (one or none: in-process)."""
    if spec.generator.devices:
        return list(spec.generator.devices)
    if spec.generator.device in ("auto", "cuda"):
        import torch  # only where a GPU may be asked for: a CPU run never pays for CUDA's set-up

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []
