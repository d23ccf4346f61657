"""Stage one shard of the plan: its stages over its samples, written as Parquet.

A shard whose predecessors in plan order are decided is decided at once,
from the samples still in memory, and written once in final form
(``flows.decide``); one whose predecessors are not decided in time is
staged and decided by the commit. Idempotent: a shard decided or staged by
an earlier (crashed) run is reused. Nothing here imports prefect or mlflow,
so the bench and tests can run it bare.
"""

from __future__ import annotations

import time
import os
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from catalog import RunRef, samples_to_table
from catalog.atomic import write_parquet_atomic
from flows.local_devices import device_workers
from flows.models import get_embedder, get_generator, get_guard
from flows.provenance import provenance_for
from flows.settings import Paths
from synthgen.engine import run_stages
from synthgen.generators import Generator
from synthgen.parallel import default_workers
from synthgen.plan import Shard, make_plan
from synthgen.runtime import set_threads
from synthgen.spec import JobSpec
from synthgen.stages import Watermark, shard_stages
from synthgen.turns import SamplerTurn

DECIDE_WAIT_S = 60.0  # device workers / work pools: a shard waits this long for its predecessors' decisions


@dataclass
class ShardReport:
    """What one shard task did."""

    shard: int
    rows: int
    reused: bool
    sampling_s: float = 0.0
    wall_s: float = 0.0
    pid: int = field(default_factory=os.getpid)  # which process staged it (device workers: one per device)
    device: str | None = None
    decided: bool = False  # decided and written in final form here (else staged for the commit)


def staging_dir(paths: Paths, spec: JobSpec) -> Path:
    """Staged shards of one job (keyed by spec digest, so reruns find them)."""
    return paths.staging / spec.output.dataset / spec.digest()[:24]


def generate_shard(spec: JobSpec, shard: Shard, paths: Paths, runs: RunRef, on_batch=None,
                   generator: Generator | None = None, wait_s: float = DECIDE_WAIT_S,
                   turn: SamplerTurn | None = None) -> ShardReport:
    """Generate one shard and decide it, or stage it; reuse it if a previous (crashed) run did either.

    ``generator``: a loaded generator to use instead of the spec's (injected, e.g. by tests).
    ``wait_s``: how long to wait for the shards before it to be decided (other
    processes generating them) before staging this one undecided.
    ``turn``: the sampler's turn this shard takes for its sampling only
    (``synthgen.turns``), so another shard can sample while this one finishes.
    """
    from flows.decide import decider_for  # it reads staging_dir from here

    out = staging_dir(paths, spec) / f"{shard.name}.parquet"
    decider = decider_for(spec, paths)
    done = decider.decided(shard)
    if done is not None:
        return ShardReport(shard.index, sum(done.counts.values()), reused=True)
    if out.is_file():
        return ShardReport(shard.index, pq.read_metadata(out).num_rows, reused=True)
    t0 = time.perf_counter()
    gen, emb = generator or get_generator(spec), get_embedder(spec)
    # OpenMP thread settings are per calling thread: set them where sampling runs
    # (the models may have been loaded by the prefetch thread).
    set_threads(spec.generator.threads)
    samples = make_plan(spec, shard.start, shard.stop)
    cond = spec.conditioning
    caption = (lambda s: cond.caption(s.class_name)) if cond.kind == "class" else (lambda s: s.prompt)
    # Device workers share the machine's cores: each takes its part.
    workers = spec.generator.workers or max(1, default_workers(gen.device, spec.generator.threads) // device_workers())
    wm = spec.output.watermark
    stages = shard_stages(gen, emb, provenance_for(spec, gen, emb, runs), caption, get_guard(spec, paths),
                          spec.output.png_compress_level, workers,
                          Watermark(wm.method, wm.strength) if wm.enabled else None)
    def batch_done(n: int) -> None:
        if turn:
            turn.check()  # the flow was interrupted: stop before the next batch
        if on_batch:
            on_batch(n)

    if turn:  # given back after the last batch; after a failure, once the task is done (retries keep it)
        turn.take()
    stats = run_stages(samples, stages, gen.batch_size, batch_done, workers, turn.give_back if turn else None)
    decided = spec.dedup.keep == "first" and _predecessors_decided(decider, shard, wait_s, turn)
    if decided:
        decider.decide(shard, samples)
    else:
        write_parquet_atomic(samples_to_table(samples), out)
    return ShardReport(shard.index, len(samples), False, stats.sampling_s, time.perf_counter() - t0,
                       device=gen.device, decided=decided)


def _predecessors_decided(decider, shard: Shard, wait_s: float, turn: SamplerTurn | None = None) -> bool:
    """Whether every shard before ``shard`` is decided, waiting up to ``wait_s`` for shards in flight.

    A predecessor that was staged undecided is decided only by the commit: no
    point waiting for it.
    """
    deadline = time.monotonic() + wait_s
    while not decider.ready(shard):
        if turn and turn.stop.is_set():  # the flow is ending (interrupted, or an earlier shard failed)
            return False
        staged = any((decider.stage / f"{s.name}.parquet").is_file() and decider.decided(s) is None
                     for s in decider.shards[: shard.index])
        if staged or time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
