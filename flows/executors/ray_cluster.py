"""Scale-out on a Ray cluster: one actor per worker, each shard's samples back through Ray's object store.

``RayExecutor(address)`` connects to a running cluster (``ray start --head``
on one machine, ``ray start --address <head>`` on each worker machine), starts
one actor per worker and hands each actor two shards at a time (the second
samples while the first finishes, as in ``flows.executors.local``). An actor
builds its components once (the executor's ``Setup``, pickled: it loads its
own models) and runs the same shard step as every executor; the samples come
back to the driver through the object store, and the driver decides them in
plan order, so no shared file system is needed and every image byte is
written once. The workers must have synthgen installed (the actor's code is
imported there, not shipped).

Actors: with a CUDA or ``auto`` generator and GPUs in the cluster, one actor
per GPU (``num_gpus=1``: Ray pins the actor to its GPU, seen as ``cuda``);
otherwise one CPU actor per node that offers a CPU. ``workers`` overrides the
count. An actor that dies (its process killed, its node lost) is replaced by
a new one, wherever the cluster has room, and its shards are tried again
under the job's ``Retry`` policy, as a shard that raised is; a shard failing
for good raises ``ShardFailed`` naming it.

``ray`` is an optional extra, imported only here and only when a job uses it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

from flows.executors.base import Retry
from flows.executors.dispatch import Dispatch
from flows.executors.local import IN_FLIGHT
from flows.executors.sampler_turn import SamplerTurn
from flows.executors.ray_address import INSTALL, RayClusterError
from flows.job.components import Components, Setup
from flows.job.shard_step import ShardResult, ShardStep
from synthgen.plan import Shard
from synthgen.spec import JobSpec

POLL_S = 1.0
# What the driver's environment hands the actors (a worker node's own environment is its raylet's): the
# offline policy of the run, and a planted fault, which reaches Ray actors as it reaches device workers.
WORKER_ENV = ("SYNTHGEN_FAILPOINT", "SYNTHGEN_FAILPOINT_ONCE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def import_ray() -> Any:
    """The ``ray`` module, with telemetry off; ``RayClusterError`` saying how to install it when missing."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError as exc:
        raise RayClusterError(f"the Ray engine needs ray: {INSTALL}") from exc
    return ray


class SetupFailed(RuntimeError):
    """An actor could not build the job's components: the job stops at once (a retry would fail the same way)."""


class ShardWorker:
    """The body of one Ray actor: builds the components on its first shard, then runs the shards it is given.

    Two calls run at once (a threaded actor, ``IN_FLIGHT``), as in
    ``flows.executors.local``: each takes the actor's sampler turn for its
    sampling only, so the next shard samples while this one finishes.
    """

    def __init__(self, setup: Setup, step: ShardStep, device: str | None, gpus: bool):
        self.setup, self.step, self.device, self.gpus = setup, step, device, gpus
        self.parts: Components | None = None
        self.loading, self.sampler = threading.Lock(), threading.Lock()

    def components(self) -> Components:
        """The components, built by the first call (the other waits for them)."""
        with self.loading:
            if self.parts is None:
                try:
                    self.parts = self.setup(self.device, share=gpus_on_this_node() if self.gpus else 1)
                except Exception as exc:  # noqa: BLE001 - named to the driver, which stops the job
                    raise SetupFailed(f"a Ray actor could not load the job's components:\n"
                                      f"{traceback.format_exc(limit=5)}") from exc
            return self.parts

    def run(self, shard: Shard, delay: float = 0.0) -> ShardResult:
        """One shard's samples (after ``delay`` seconds: a retry's backoff)."""
        parts = self.components()
        if delay:
            time.sleep(delay)
        turn = SamplerTurn(self.sampler)
        try:
            return self.step(shard, parts, None, turn)
        finally:
            turn.give_back()  # also when the shard failed while it held the sampler


def gpus_on_this_node() -> int:
    """How many GPUs this actor's node has: GPU actors there share its cores for post-processing."""
    ray = import_ray()
    here = ray.get_runtime_context().get_node_id()
    return max([1, *(int(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n["NodeID"] == here)])


def actor_device(spec: JobSpec, gpus: bool) -> str | None:
    """The device an actor loads the generator on (None: the spec's own)."""
    device = spec.generator.device
    if device.startswith("cuda:"):
        raise RayClusterError(f"generator.device {device!r}: a Ray actor sees only the GPU Ray gives it; "
                              "use device 'cuda' or 'auto' in the spec")
    if gpus:
        return "cuda"  # Ray sets CUDA_VISIBLE_DEVICES: the actor's one GPU, as a one-GPU run sees it
    if device == "cuda":
        raise RayClusterError("generator.device 'cuda': the Ray cluster offers no GPU; "
                              "use 'auto' or 'cpu', or add a GPU node")
    return "cpu" if device == "auto" else None  # auto on a CPU actor must not reach for a GPU Ray did not give


@dataclass
class Slot:
    """One actor and the shards it runs, by their calls' result references."""

    actor: Any
    calls: dict[Any, Shard] = field(default_factory=dict)


@dataclass
class RayExecutor:
    """Shards on the actors of the Ray cluster at ``address``; results back in plan order.

    ``workers``: how many actors (None: one per GPU, else one per node with a CPU).
    ``env``: variables the actors get (default: ``WORKER_ENV`` from this process's environment).
    """

    address: str | None = None
    retry: Retry = field(default_factory=Retry)
    workers: int | None = None
    env: dict[str, str] | None = None
    # Keep the actors after a map call that delivered every shard, for the next call with the same step and
    # setup (a kept_per_condition job's rounds); ``close`` ends them (``run_job`` calls it).
    keep_workers: bool = False
    kept: tuple[ShardStep, Setup, list[Slot]] | None = field(default=None, init=False, repr=False)
    connected: bool = field(default=False, init=False, repr=False)  # this executor called ray.init

    def connect(self) -> Any:
        """``ray``, connected to the cluster (once; a caller's own connection is used as it is)."""
        ray = import_ray()
        if not ray.is_initialized():
            ray.init(address=self.address, namespace="synthgen", log_to_driver=False, logging_level=logging.WARNING)
            self.connected = True
        return ray

    def close(self) -> None:
        """End the kept actors, and the connection if this executor made it."""
        if self.kept is not None:
            stop(self.kept[2])
            self.kept = None
        if self.connected:
            import_ray().shutdown()
            self.connected = False

    def plan_actors(self, ray: Any, spec: JobSpec) -> tuple[int, bool]:
        """How many actors, and whether each takes a GPU."""
        total = ray.cluster_resources()
        gpus = spec.generator.device in ("auto", "cuda") and total.get("GPU", 0) >= 1
        offered = int(total["GPU"]) if gpus else sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU"))
        return max(1, self.workers or offered), gpus

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]:
        """Run ``shards`` on the cluster's actors; their results in plan order (``Executor``)."""
        if not shards:  # nothing to run (a resumed round): no actor is started
            self.close()
            return
        ray = self.connect()
        n, gpus = self.plan_actors(ray, step.spec)
        device = actor_device(step.spec, gpus)
        env = self.env if self.env is not None else {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
        remote = ray.remote(ShardWorker).options(
            num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=0, max_task_retries=0, max_concurrency=IN_FLIGHT,
            scheduling_strategy="SPREAD", runtime_env={"env_vars": env} if env else None)

        def start() -> Slot:
            return Slot(remote.remote(setup, step, device, gpus))

        slots = self.reuse(step, setup) or [start() for _ in range(n)]
        dispatch = Dispatch(shards, n, self.retry)

        def turn(limit: int) -> None:
            self._hand_out(slots, dispatch, limit)
            collect(ray, slots, dispatch, start)
            # The actor that just finished gets its next shard now, not after the driver has decided this one.
            self._hand_out(slots, dispatch, limit)

        try:
            yield from dispatch.in_plan_order(turn)
        finally:
            if self.keep_workers and dispatch.all_delivered and not any(s.calls for s in slots):
                self.kept = (step, setup, slots)
            else:
                stop(slots)
                if not self.keep_workers:
                    self.close()

    def reuse(self, step: ShardStep, setup: Setup) -> list[Slot] | None:
        """The kept actors, if they were started for ``step`` and ``setup`` (else ended)."""
        kept, self.kept = self.kept, None
        if kept is not None and kept[0] is step and kept[1] is setup:
            return kept[2]
        if kept is not None:
            stop(kept[2])
        return None

    def _hand_out(self, slots: list[Slot], dispatch: Dispatch, limit: int) -> None:
        """Give idle actors the next shards, up to plan index ``limit`` (retried shards first, after their backoff)."""
        for s in slots:
            while len(s.calls) < IN_FLIGHT and (shard := dispatch.next(limit)) is not None:
                tries = dispatch.tries(shard)
                s.calls[s.actor.run.remote(shard, self.retry.delay(tries) if tries else 0.0)] = shard


def collect(ray: Any, slots: list[Slot], dispatch: Dispatch, start) -> None:
    """Wait a while for a shard to end; file its result, or retry it (on a new actor when its actor is gone)."""
    busy = {ref: s for s in slots for ref in s.calls}
    if not busy:
        return
    done, _ = ray.wait(list(busy), num_returns=1, timeout=POLL_S)
    for ref in done:
        s = busy[ref]
        if ref not in s.calls:  # its actor died with another call: already retried
            continue
        shard = s.calls.pop(ref)
        try:
            dispatch.done(shard, ray.get(ref))
        except SetupFailed:
            raise
        except ray.exceptions.RayTaskError as exc:  # the step raised; the actor lives on
            dispatch.failed(shard, f"{type(exc.cause).__name__}: {exc.cause}")
        except ray.exceptions.RayError as exc:  # the actor (or its node) is gone: a new one takes its place
            stop([s])
            slots[slots.index(s)] = start()
            lost = [shard, *s.calls.values()]  # its other call died with it
            s.calls.clear()
            for gone in sorted(lost, key=lambda x: x.index, reverse=True):  # the earliest ends up first in line
                dispatch.failed(gone, f"its Ray actor died ({type(exc).__name__})")


def stop(slots: list[Slot]) -> None:
    """End the actors (their calls in flight are dropped: nobody waits for them)."""
    ray = import_ray()
    for s in slots:
        try:
            ray.kill(s.actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead, or the cluster already gone
            pass
