"""The batched sampling engine: the device samples, the CPU finishes behind it.

The main thread only feeds the denoiser. Each finished batch goes to one
background thread that quantises, PNG-encodes, hashes and embeds it while
the next batch samples, so on a GPU the device never waits for the CPU (and
on a two-core CPU the second core does the post-processing). At most two
batches are in flight, which bounds memory.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np

from synthgen.embedder import Embedder
from synthgen.failpoints import failpoint
from synthgen.generators import Generator
from synthgen.imaging import array_to_pil, encode_png, pixel_sha256
from synthgen.memorisation import PixelGuard
from synthgen.records import Provenance, Sample
from synthgen.runtime import pin_helper_thread


@dataclass
class EngineStats:
    """Where the time of one ``run_samples`` call went."""

    images: int = 0
    sampling_s: float = 0.0  # main thread, inside the pipeline
    wall_s: float = 0.0


def _finish_batch(
    samples: list[Sample],
    arrays: np.ndarray,
    embedder: Embedder | None,
    provenance: Provenance | None,
    captions: list[str] | None,
    guard: PixelGuard | None = None,
) -> None:
    now = datetime.now(timezone.utc)
    for sample, arr in zip(samples, arrays):
        img = array_to_pil(arr)
        sample.image = img
        sample.png = encode_png(img)
        sample.image_sha256 = pixel_sha256(img)
        sample.width, sample.height = img.width, img.height
        sample.created_at = now
        sample.provenance = provenance
    if embedder is not None:
        emb = embedder.embed_images([s.image for s in samples])
        scores = None
        if captions is not None:
            scores = np.einsum("nd,nd->n", emb, embedder.embed_texts(captions))
        for i, sample in enumerate(samples):
            sample.embedding = emb[i]
            sample.clip_score = float(scores[i]) if scores is not None else None
    if guard is not None:
        dists, ids = guard.nearest([s.image for s in samples])
        for sample, d, rid in zip(samples, dists, ids):
            sample.real_pixel_distance, sample.real_pixel_nn_id = d, rid


def run_samples(
    samples: list[Sample],
    generator: Generator,
    embedder: Embedder | None = None,
    provenance: Provenance | None = None,
    caption: Callable[[Sample], str] | None = None,
    on_batch: Callable[[int], None] | None = None,
    guard: PixelGuard | None = None,
) -> EngineStats:
    """Generate, encode and embed ``samples`` in place, in plan order.

    ``caption`` maps a sample to the text its CLIP alignment score is taken
    against; ``on_batch(n)`` is called after each batch is sampled (progress);
    ``guard`` finds each sample's closest real image in pixel space.
    """
    stats = EngineStats()
    t0 = time.perf_counter()
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthgen-finish",
                            initializer=pin_helper_thread) as pool:
        for start in range(0, len(samples), generator.batch_size):
            chunk = samples[start : start + generator.batch_size]
            t = time.perf_counter()
            arrays = generator.generate(chunk)
            stats.sampling_s += time.perf_counter() - t
            failpoint("sampling", f"batch at plan index {chunk[0].plan_index}")
            captions = [caption(s) for s in chunk] if caption and embedder else None
            pending.append(pool.submit(_finish_batch, chunk, arrays, embedder, provenance, captions, guard))
            if len(pending) >= 2:  # keep at most two batches in flight
                pending.pop(0).result()
            if on_batch:
                on_batch(len(chunk))
        for fut in pending:
            fut.result()
    stats.images = len(samples)
    stats.wall_s = time.perf_counter() - t0
    return stats
