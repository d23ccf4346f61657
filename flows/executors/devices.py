"""Several devices on one machine, no server: one worker process per device.

Each worker is started for one device, pins ``CUDA_VISIBLE_DEVICES`` to it
before torch touches CUDA, builds its components once (the executor's
setup) and then takes whole shards from a shared queue, sending each
shard's samples back to the driver, which decides them in plan order and
writes every image byte once. A worker that dies (out of memory, killed)
is replaced and its shard tried again, as a failed shard is (at once: a device worker
fails on its own device, not on a shared resource that needs time to clear).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import traceback
from dataclasses import dataclass, field
from typing import Iterator

from flows.executors.base import Retry, failed
from flows.job.components import Setup
from flows.job.shard_step import ShardResult, ShardStep
from synthgen.plan import Shard
from synthgen.spec import JobSpec

AHEAD = 2  # shards queued per worker beyond the one the driver waits for: bounds the driver's memory
POLL_S = 1.0


def pin(device: str) -> str:
    """Make ``device`` this process's only GPU (before torch touches CUDA); the device name to load on."""
    if device.startswith("cuda:"):
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        return "cuda"  # the worker sees only its GPU: rows record the device as a one-GPU run does
    return device


def worker_main(device: str, share: int, setup: Setup, step: ShardStep, todo, done) -> None:
    """A device worker: build the components once, then run shards from ``todo`` until it yields None."""
    try:
        parts = setup(pin(device), share)
    except Exception:  # noqa: BLE001 - reported to the driver, which stops the job
        done.put(("setup", None, traceback.format_exc(limit=5)))
        return
    while (shard := todo.get()) is not None:
        done.put(("start", shard.index, os.getpid()))
        try:
            done.put(("done", shard.index, step(shard, parts)))
        except Exception as exc:  # noqa: BLE001 - the driver decides whether to retry
            done.put(("error", shard.index, f"{type(exc).__name__}: {exc}"))


@dataclass
class DevicesExecutor:
    """One worker process per entry of ``devices`` (e.g. ``["cuda:0", "cuda:1"]``); shards back in plan order."""

    devices: list[str]
    retry: Retry = field(default_factory=Retry)

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA or threads
        todo, done = ctx.Queue(), ctx.Queue()
        n = len(self.devices)

        def start(device: str):
            p = ctx.Process(target=worker_main, args=(device, n, setup, step, todo, done),
                            name=f"synthgen-device-{device}", daemon=True)
            p.start()
            return p

        workers = {d: start(d) for d in self.devices}
        by_index = {s.index: s for s in shards}
        order = [s.index for s in shards]
        queued, results, running, attempts = 0, {}, {}, {}
        try:
            for pos, nxt in enumerate(order):
                while queued < min(len(order), pos + 1 + AHEAD * n):
                    todo.put(by_index[order[queued]])
                    queued += 1
                while nxt not in results:
                    try:
                        kind, index, value = done.get(timeout=POLL_S)
                    except queue.Empty:
                        self._replace_dead(workers, running, by_index, attempts, todo, start)
                        continue
                    if kind == "setup":
                        raise RuntimeError(f"a device worker could not load the job's components:\n{value}")
                    if kind == "start":
                        running[value] = index
                    elif kind == "done":
                        results[index] = value
                        running = {p: i for p, i in running.items() if i != index}
                    else:
                        running = {p: i for p, i in running.items() if i != index}
                        self._retry(by_index[index], value, attempts, todo)
                yield results.pop(nxt)
        finally:
            for _ in workers:
                todo.put(None)
            for p in workers.values():
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()

    def _retry(self, shard: Shard, error: str, attempts: dict, todo) -> None:
        attempts[shard.index] = attempts.get(shard.index, 0) + 1
        if attempts[shard.index] > self.retry.retries:
            raise failed(shard, error)
        todo.put(shard)

    def _replace_dead(self, workers: dict, running: dict, by_index: dict, attempts: dict, todo, start) -> None:
        """Start a new worker for each that died; the shard it was running is tried again."""
        for device, p in list(workers.items()):
            if p.is_alive():
                continue
            lost = running.pop(p.pid, None)
            workers[device] = start(device)
            if lost is not None:
                self._retry(by_index[lost], f"its worker process died (exit {p.exitcode})", attempts, todo)


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
