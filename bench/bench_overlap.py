"""Shard boundaries with a simulated GPU: how long the device waits for the CPU, one by one vs overlapped.

A simulated GPU (the tiny SD pipeline's attributes, but ``generate`` sleeps
for ``batch / gpu_img_s`` seconds, releasing the GIL as a thread waiting on
CUDA does, then returns precomputed photo-like images) feeds the real
shard: the real finishing stages (OpenCV PNG + pixel hash, a 224-px /
patch-32 CLIP, scores), the real decision against the job's earlier rows
and the final Parquet shards. Each job runs through ``flows.job.run.run_job``:

* ``one by one``: an executor (below, a dozen lines) that runs each shard in
  turn (each shard's tail: its last batches' stages, then the driver's
  decision and Parquet, before the next shard's first batch);
* ``overlapped``: ``flows.executors.local.LocalExecutor``, the in-process
  path (two shards in flight, one sampler turn, the driver deciding shard
  k while shard k+1 samples).
Both are timed from the start of ``run_job`` to the last shard decided (the commit is left out).

``device_busy`` is the simulated GPU's busy time over the wall time of
the shards (1.0: the device never waited). The bare loop is the GPU time
alone (images / gpu_img_s). Target (issue 11, on a GPU): end to end >= 0.95
of the bare loop.

    python bench/bench_overlap.py [--px 512] [--gpu-img-s 20 60] [--shards 4] [--shard-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from bench.bench_throughput import photo_like  # noqa: E402
from bench.report import emit  # noqa: E402


class SimulatedGPU:
    """A loaded generator whose sampling is a sleep of ``batch / img_s`` seconds (no CPU), then fixed images."""

    def __init__(self, inner, images: np.ndarray, img_s: float):
        self.inner, self.images, self.img_s = inner, images, img_s
        self.busy_s = 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, samples) -> np.ndarray:
        t = time.perf_counter()
        time.sleep(len(samples) / self.img_s)
        self.busy_s += time.perf_counter() - t
        return self.images[np.array([s.plan_index for s in samples]) % len(self.images)]


def job(sd: Path, clip: Path, px: int, images: int, shard_size: int, batch: int) -> dict:
    return {"name": "overlap", "generator": {"model": str(sd), "steps": 1, "height": px, "width": px,
                                             "batch_size": batch, "device": "cpu"},
            "conditioning": {"prompts": ["a red square", "a blue circle"]}, "images_per_condition": images // 2,
            "seed": 1, "embedder": {"model": str(clip), "device": "cpu"},
            "output": {"dataset": "overlap", "shard_size": shard_size}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=512)
    ap.add_argument("--gpu-img-s", type=float, nargs="+", default=[20.0, 60.0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from catalog import RunRef
    from flows.executors.local import LocalExecutor
    from flows.job.components import ComponentLoader, Given, with_generator
    from flows.job.run import run_job
    from flows.settings import configure
    from synthgen.spec import parse_spec
    from tests.tiny_clip import build_tiny_clip
    from tests.tiny_sd import build_tiny_sd

    class OneByOne:
        """An executor that runs each shard in turn in this thread (what the flow did before shards overlapped)."""

        def map(self, step, shards, setup):
            parts = setup()
            for shard in shards:
                yield step(shard, parts)

    runs = RunRef(prefect_flow_run_id="bench-overlap", mlflow_run_id=None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sd, clip = build_tiny_sd(tmp / "sd", vae_levels=4), build_tiny_clip(tmp / "clip", 224, 32)
        images = photo_like(16, args.px)
        n = args.shards * args.shard_size
        spec = parse_spec(job(sd, clip, args.px, n, args.shard_size, args.batch))
        parts = ComponentLoader(spec, str(tmp / "catalog"))()

        def timed(spec, paths, executor, gen) -> tuple[list, float]:
            """run_job's shards: from its start to the last shard decided (the commit left out)."""
            done: list[float] = []
            t = time.perf_counter()
            result = run_job(spec, paths=paths, runs=runs, executor=executor,
                             setup=Given(with_generator(parts, gen)), on_shard=lambda r: done.append(time.perf_counter()))
            return result, done[-1] - t

        # Warm: models, the first Parquet write.
        warm = parse_spec(job(sd, clip, args.px, 2 * args.batch, args.batch, args.batch))
        timed(warm, configure(tmp / "warm"), LocalExecutor(), SimulatedGPU(parts.generator, images, 1000.0))
        for img_s in args.gpu_img_s:
            for mode in ("one by one", "overlapped", "one by one", "overlapped"):
                gen = SimulatedGPU(parts.generator, images, img_s)
                paths = configure(tmp / f"{mode.replace(' ', '-')}-{img_s}-{len(rows)}")
                result, wall = timed(spec, paths, LocalExecutor() if mode == "overlapped" else OneByOne(), gen)
                assert result.commit.rewritten_shards == 0  # written once either way
                bare = n / img_s
                rows.append({"px": args.px, "gpu_img_s": img_s, "mode": mode, "images": n, "shards": args.shards,
                             "bare_s": bare, "shards_wall_s": wall, "device_busy": gen.busy_s / wall,
                             "img_s": n / wall, "over_bare": wall / bare, "load_avg_1m": os.getloadavg()[0]})
                print(rows[-1], flush=True)
    emit("overlap", "Shard boundaries, simulated GPU: one by one vs overlapped (flows.executors.local)", rows,
         {"batch": args.batch, "shard_size": args.shard_size}, args.json)


if __name__ == "__main__":
    main()
