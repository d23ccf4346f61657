"""The batched sampling engine: the device samples, the CPU finishes behind it.

The engine runs a shard's stages (``synthgen.stages``) batch by batch. The
main thread only runs the first stage, the denoiser. Each sampled batch goes
to one of ``workers`` background threads that runs the other stages (encode,
embed, guard, score) while the next batches sample, so on a GPU the device
never waits for the CPU, and post-processing uses every core the sampler
does not (``synthgen.parallel``). A batch's result depends only on the batch,
never on which worker finished it, so the output bytes do not depend on the
pool size. At most ``workers + 1`` batches are in flight, which bounds memory.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

from synthgen.embedder import Embedder
from synthgen.failpoints import failpoint
from synthgen.generators import Generator
from synthgen.memorisation import PixelGuard
from synthgen.records import Provenance, Sample
from synthgen.parallel import default_workers
from synthgen.runtime import pin_helper_thread
from synthgen.stages import Stage, shard_stages


@dataclass
class EngineStats:
    """Where the time of one ``run_samples`` call went."""

    images: int = 0
    sampling_s: float = 0.0  # main thread, inside the pipeline
    wall_s: float = 0.0


def run_samples(
    samples: list[Sample],
    generator: Generator,
    embedder: Embedder | None = None,
    provenance: Provenance | None = None,
    caption: Callable[[Sample], str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    guard: PixelGuard | None = None,
    workers: int | None = None,
) -> EngineStats:
    """Generate, encode and embed ``samples`` in place, in plan order.

    ``caption`` maps a sample to the text its CLIP alignment score is taken
    against; ``on_batch(n)`` is called after each batch is sampled (progress);
    ``guard`` finds each sample's closest real image in pixel space;
    ``workers``: post-processing workers (default: the cores the sampler leaves).
    """
    workers = workers or default_workers(generator.device, generator.spec.threads)
    stages = shard_stages(generator, embedder, provenance, caption, guard, workers=workers)
    return run_stages(samples, stages, generator.batch_size, on_batch, workers)


def _finish(stages: Sequence[Stage], batch: list[Sample]) -> None:
    for stage in stages:
        stage(batch)
    for s in batch:
        s.pixels = None  # the stages are done with the uint8 arrays: memory stays bounded per batch


def run_stages(samples: list[Sample], stages: Sequence[Stage], batch_size: int,
               on_batch: Callable[[int], None] | None = None, workers: int = 1,
               on_sampled: Callable[[], None] | None = None) -> EngineStats:
    """Run ``stages`` over ``samples`` in batches of ``batch_size``, in plan order.

    ``stages[0]`` (sampling) runs on the calling thread; the rest run on
    ``workers`` background threads (each pinned to one OpenMP thread, so none
    spins on the sampler's core), at most ``workers + 1`` batches behind.
    ``on_sampled()`` is called once the last batch is sampled, before waiting
    for the last batches' other stages (``flows.executors.sampler_turn``: the next shard
    may sample meanwhile).
    """
    stats = EngineStats()
    t0 = time.perf_counter()
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthgen-finish",
                            initializer=pin_helper_thread) as pool:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            t = time.perf_counter()
            stages[0](chunk)
            stats.sampling_s += time.perf_counter() - t
            failpoint("sampling", f"batch at plan index {chunk[0].plan_index}")
            pending.append(pool.submit(_finish, stages[1:], chunk))
            # Bounded memory: wait for the oldest batch once every worker has one and one more is queued.
            if len(pending) > workers:
                pending.pop(0).result()
            if on_batch:
                on_batch(len(chunk))
        if on_sampled:
            on_sampled()
        for fut in pending:
            fut.result()
    stats.images = len(samples)
    stats.wall_s = time.perf_counter() - t0
    return stats
