"""The shard step: one shard of the plan through its stages, with the components it is handed.

A pure map step: it reads its plan slice and the components an executor's
setup built (generator, embedder, guard), and returns the shard's samples
in plan order. It never reads, waits for or decides another shard; the
driver's ordered consumer (``flows.job.decisions``) does that. Nothing here
imports prefect or mlflow, so every executor runs the same step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from catalog import RunRef
from flows.job.components import Components
from flows.job.provenance import provenance_for
from synthgen.engine import run_stages
from synthgen.parallel import default_workers
from synthgen.plan import Shard, shard_plan
from synthgen.records import Sample
from synthgen.runtime import set_threads
from synthgen.spec import JobSpec
from synthgen.stages import Watermark, shard_stages


@dataclass
class ShardReport:
    """What one shard did (or that an earlier run had done it: ``reused``)."""

    shard: int
    rows: int
    reused: bool
    sampling_s: float = 0.0
    wall_s: float = 0.0
    pid: int = field(default_factory=os.getpid)  # which process ran it (device workers: one per device)
    device: str | None = None


@dataclass
class ShardResult:
    """A shard's report and its samples in plan order; ``samples`` is None when a worker staged them
    (``flows.job.staging``: a remote worker) for the driver to read back."""

    report: ShardReport
    samples: list[Sample] | None = None


class SamplerSlot(Protocol):
    """An executor's hold on the sampler (``flows.executors.sampler_turn``): the step takes it before its
    first batch, checks it between batches (an interrupted run stops there) and gives it back after its last."""

    def take(self) -> None: ...

    def check(self) -> None: ...

    def give_back(self) -> None: ...


@dataclass(frozen=True)
class ShardStep:
    """Generate one shard of ``spec`` for the runs ``runs``; called by an executor, once per shard."""

    spec: JobSpec
    runs: RunRef

    def __call__(self, shard: Shard, parts: Components, on_batch: Callable[[int], None] | None = None,
                 slot: SamplerSlot | None = None) -> ShardResult:
        t0 = time.perf_counter()
        spec, gen, emb = self.spec, parts.generator, parts.embedder
        # OpenMP thread settings are per calling thread: set them where sampling runs.
        set_threads(spec.generator.threads)
        samples = shard_plan(spec, shard)
        # Workers that share the machine's cores (one per device) each take their part.
        workers = spec.generator.workers or max(1, default_workers(gen.device, spec.generator.threads) // parts.share)
        wm = spec.output.watermark
        stages = shard_stages(gen, emb, provenance_for(spec, gen, emb, self.runs, parts.init), caption_of(spec),
                              parts.guard, spec.output.png_compress_level, workers,
                              Watermark(wm.method, wm.strength) if wm.enabled else None, init=parts.init)

        def batch_done(n: int) -> None:
            if slot:
                slot.check()  # the run was interrupted: stop before the next batch
            if on_batch:
                on_batch(n)

        if slot:  # given back after the last batch is sampled, so the next shard samples during this one's tail
            slot.take()
        stats = run_stages(samples, stages, gen.batch_size, batch_done, workers, slot.give_back if slot else None)
        report = ShardReport(shard.index, len(samples), False, stats.sampling_s, time.perf_counter() - t0,
                             device=gen.device)
        return ShardResult(report, samples)


def caption_of(spec: JobSpec) -> Callable[[Sample], str]:
    """The text a sample's CLIP alignment score is taken against: its class caption, or its prompt.

    With a prompt program the prompt is what the model was asked to draw (class name and attribute
    values), so that is what the image is scored against, also in a class job.
    """
    cond = spec.conditioning
    if cond.kind == "class":
        return lambda s: cond.caption(s.class_name)
    return lambda s: s.prompt
