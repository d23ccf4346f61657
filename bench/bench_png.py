"""PNG encoders of the encode stage (``synthgen.png``): time and bytes per image, against Pillow at level 1.

Per content kind (photo-like noise, two real photos from scikit-learn,
upscaled digits, a smooth gradient) and size, each encoder's best-of-3
milliseconds per image on one thread and its mean bytes, with both as
ratios to Pillow at level 1 (the default before ``png_encoder``) measured
in the same run. Then each encoder on 1 and on ``cores`` threads: an
encoder that holds the GIL does not speed up on more threads.

    python bench/bench_png.py [--sizes 256 512 1024]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.bench_throughput import photo_like  # noqa: E402
from bench.report import emit  # noqa: E402
from synthgen.parallel import machine_cores  # noqa: E402
from synthgen.png import encode_pixels  # noqa: E402

BASELINE = ("pillow", 1)
CANDIDATES = [BASELINE, ("pillow", 6), ("opencv", 1)]


def contents(px: int) -> dict[str, list[np.ndarray]]:
    from sklearn.datasets import load_digits, load_sample_image

    def resize(a, mode=Image.BICUBIC):
        return np.asarray(Image.fromarray(a).resize((px, px), mode))

    digits = [(d * 16).clip(0, 255).astype(np.uint8) for d in load_digits().images[:4]]
    rng = np.random.default_rng(0)
    return {
        "photo_like": list(photo_like(4, px)),
        "photos": [resize(load_sample_image(n)) for n in ("china.jpg", "flower.jpg")],
        "digits": [np.repeat(resize(d, Image.BILINEAR)[..., None], 3, axis=2) for d in digits],
        "smooth": [resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))],
    }


def per_image(images, encoder: str, level: int) -> tuple[float, float]:
    """Best-of-3 seconds per image on this thread, and mean bytes."""
    encode_pixels(images[0], level, encoder)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        out = [encode_pixels(a, level, encoder)[0] for a in images]
        best = min(best, (time.perf_counter() - t) / len(images))
    return best, float(np.mean([len(b) for b in out]))


def threads_rate(images, encoder: str, level: int, threads: int) -> float:
    work = images * max(1, 32 // len(images))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode_pixels, work[:threads], [level] * threads, [encoder] * threads))
        t = time.perf_counter()
        list(pool.map(encode_pixels, work, [level] * len(work), [encoder] * len(work)))
        return len(work) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    args = ap.parse_args()
    import cv2

    cv2.setNumThreads(1)
    rows, scaling = [], []
    cores = machine_cores()
    for px in args.sizes:
        for kind, images in contents(px).items():
            base_s, base_b = per_image(images, *BASELINE)
            for encoder, level in CANDIDATES:
                s, b = (base_s, base_b) if (encoder, level) == BASELINE else per_image(images, encoder, level)
                rows.append({"px": px, "content": kind, "encoder": encoder, "level": level, "ms": s * 1000,
                             "kb": b / 1024, "time_vs_pillow1": s / base_s, "bytes_vs_pillow1": b / base_b})
        if cores > 1:
            images = contents(px)["photo_like"]
            for encoder, level in CANDIDATES:
                one = threads_rate(images, encoder, level, 1)
                many = threads_rate(images, encoder, level, cores)
                scaling.append({"px": px, "encoder": encoder, "level": level, "img_s_1_thread": one,
                                f"img_s_{cores}_threads": many, "speedup": many / one,
                                "load_avg_1m": os.getloadavg()[0]})
    emit("png", "PNG encoders per image, one thread (ratios to Pillow level 1, same run)", rows)
    if scaling:
        emit("png_threads", f"PNG encoders on 1 vs {cores} threads (photo-like)", scaling)


if __name__ == "__main__":
    main()
