"""Throughput: the engine's ceiling with an infinitely fast GPU, and ``synthgen run`` vs a bare loop.

A. Engine ceiling. A stub generator returns precomputed RGB images (the
   sampler costs nothing: an "infinitely fast GPU") at 256 / 512 / 1024 px;
   the other stages are the real ones: PNG encode + pixel hash, embeddings
   from a tiny random CLIP with a 224-px input and 32-px patches (a
   ViT-B/32-shaped input path), the pixel guard against 256 real images,
   CLIP alignment scores and the rules' measurements. In the same run each
   stage is first timed alone on one thread (per-image cost); the ideal is
   cores / (sum of the stages' per-image costs), and the engine's img/s is
   reported against it, for one worker (the old engine's shape) and for
   one worker per core, for each PNG encoder (``output.png_encoder``:
   pillow, the old bytes; opencv, the default). Target at 512 px:
   >= 55 img/s and >= 0.8 of ideal.
   The machine is shared: the 1-minute load average after each run says how
   busy its two cores were with other work.
B. ``synthgen run`` of a tiny Stable Diffusion whose VAE upsamples 8x
   (512-px images from 64x64 latents) vs the bare pipeline loop at the same
   settings (batch, steps, seeds), interleaved bare, flow, bare; flow/bare
   is the flow's wall time (minus the fixed start-up it reports) over the
   mean of the adjacent bare loops, over 3 flow runs and their median
   (``--flow-repeats``). Target: <= 1.05. ``shards_over_bare``
   leaves out the commit and the finishing reports (card, grids, MLflow),
   fixed costs; 64 images in two shards, so that they weigh about what
   they would in a real job (``throughput_flow.flow_vs_bare`` says why).

    python bench/bench_throughput.py [--sizes 256 512 1024] [--images 64] [--skip-flow]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import emit  # noqa: E402


class StubGenerator:
    """Precomputed images, returned at once: what the engine does when sampling is free."""

    def __init__(self, images: np.ndarray, batch_size: int):
        self.images, self.batch_size = images, batch_size
        self.device, self.spec = "cpu", None  # post-processing as on a CPU host; the bench sizes the pool itself

    def generate(self, samples) -> np.ndarray:
        return self.images[np.array([s.plan_index for s in samples]) % len(self.images)]


def photo_like(n: int, px: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields plus sensor-like noise: compresses like a photo, not like noise or a flat fill."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = np.empty((n, px, px, 3), np.uint8)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, (max(2, px // 32),) * 2 + (3,), dtype=np.uint8))
        smooth = np.asarray(small.resize((px, px), Image.BICUBIC), dtype=np.float32)
        out[i] = np.clip(smooth + rng.normal(0, 3, smooth.shape), 0, 255).astype(np.uint8)
    return out


def plan(n: int):
    from synthgen.records import Sample

    return [Sample(f"s{i}", "synthetic", plan_index=i, class_id=i % 10, class_name=str(i % 10), seed=i)
            for i in range(n)]


def stage_costs(stages, samples) -> dict[str, float]:
    """Seconds per image of each stage after sampling, alone on this thread (one OpenMP thread)."""
    stages[0](samples)
    for stage in stages[1:]:  # once untimed: first-call costs (lazy imports, caches) are not per image
        stage(samples)
    costs = {}
    for stage in stages[1:]:
        t = time.perf_counter()
        stage(samples)
        costs[type(stage).__name__.lower()] = (time.perf_counter() - t) / len(samples)
    return costs


def ceiling(px: int, n: int, batch: int, embedder, guard, encoder: str) -> list[dict]:
    from synthgen.engine import run_stages
    from synthgen.parallel import machine_cores
    from synthgen.runtime import pin_helper_thread
    from synthgen.stages import shard_stages

    cores = machine_cores()
    gen = StubGenerator(photo_like(16, px), batch)
    caption = lambda s: f"a photo of a {s.class_name}"  # noqa: E731
    pin_helper_thread()
    torch.set_num_threads(1)
    costs = stage_costs(shard_stages(gen, embedder, None, caption, guard, workers=1, png_encoder=encoder), plan(batch))
    ideal = cores / sum(costs.values())
    rows = []
    for workers in sorted({1, cores}):
        stages = shard_stages(gen, embedder, None, caption, guard, workers=workers, png_encoder=encoder)
        run_stages(plan(batch * workers), stages, batch, workers=workers)  # warm: pool start, caches
        stats = run_stages(plan(n), stages, batch, workers=workers)
        rate = n / stats.wall_s
        rows.append({"px": px, "encoder": encoder, "workers": workers, "img_s": rate, "ideal_img_s": ideal, "of_ideal": rate / ideal,
                     "load_avg_1m": os.getloadavg()[0],  # other agents' work on the same cores
                     **{f"{k}_ms": v * 1000 for k, v in costs.items()}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--images", type=int, default=64, help="images per size and pool")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--encoders", nargs="+", default=["pillow", "opencv"],
                    help="PNG encoders (synthgen.png) to run, in the same run: pillow is the bytes of old jobs")
    ap.add_argument("--skip-flow", action="store_true")
    ap.add_argument("--skip-ceiling", action="store_true")
    ap.add_argument("--flow-repeats", type=int, default=3, help="flow runs in part B (each between two bare loops)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from synthgen.embedder import load_embedder
    from synthgen.memorisation import PixelGuard
    from synthgen.spec import EmbedderSpec
    from tests.tiny_clip import build_tiny_clip

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        clip_dir = build_tiny_clip(Path(tmp) / "clip224", image_size=224, patch_size=32)
        embedder = load_embedder(EmbedderSpec(model=str(clip_dir), device="cpu", batch_size=64))
        reals = [Image.fromarray(a) for a in photo_like(256, 64, seed=1)]
        guard = PixelGuard([f"r{i}" for i in range(len(reals))], reals)
        rows = []
        for px in [] if args.skip_ceiling else args.sizes:
            for encoder in args.encoders:
                rows += ceiling(px, args.images, args.batch, embedder, guard, encoder)
        extra = {"images": args.images, "batch": args.batch}
        if not args.skip_flow:
            from bench.throughput_flow import flow_vs_bare

            flow_rows = flow_vs_bare(Path(tmp), repeats=args.flow_repeats)
            emit("throughput_flow", "synthgen run vs bare loop (tiny SD, 512 px)", flow_rows)
        if rows:
            emit("throughput", "Engine ceiling with a stub generator (img/s; ideal = cores / sum of stage costs)",
                 rows, extra, args.json)


if __name__ == "__main__":
    main()
