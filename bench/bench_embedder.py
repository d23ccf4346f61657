"""Benchmark the embedded digits CLIP embedder through SentenceTransformer.

Uses the fixed split of scikit-learn's digits from scripts/train_embedder.py
(held-out = ``i % 5 == 0``) and the pipeline's 16x16 grey PNG images
(PIL mode "L"). Reports:

* zero-shot accuracy: nearest caption "a handwritten digit {name}";
* NN retrieval accuracy: held-out query vs train gallery, cosine;
* encode throughput (images/s, batch 256, one thread, PIL -> embedding);
* dedup calibration: for each held-out real image, its max cosine similarity
  to any OTHER real image (all 1,797), as percentiles 50/90/99/99.9 and max;
  and the cosine between a real image and a lightly transformed copy of itself
  (1-pixel shift, gaussian noise sigma 0.03, contrast x0.9), as percentiles
  min/1/5/50.

    python bench/bench_embedder.py [--model synthgen/assets/digits-clip] [--json bench/results/embedder.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from synthgen.digits import CLASS_NAMES, caption, load_digits_uint8, upsample

SIZE = 16


def real_images() -> tuple[np.ndarray, np.ndarray]:
    """(N,16,16) uint8 exactly as the pipeline's PNGs, and labels."""
    images, labels = load_digits_uint8()
    return (upsample(images, SIZE) * 255).round().astype(np.uint8), labels


def to_pil(u8: np.ndarray) -> list[Image.Image]:
    return [Image.fromarray(a, mode="L") for a in u8]


def shift(u8: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Integer shift with zero (background) fill."""
    out = np.zeros_like(u8)
    h, w = u8.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = u8[..., ys, xs]
    return out


def to_u8(x01: np.ndarray) -> np.ndarray:
    return (np.clip(x01, 0, 1) * 255).round().astype(np.uint8)


def light_variants(u8: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Lightly transformed copies of each image."""
    x = u8.astype(np.float32) / 255
    dirs = [(0, 1), (0, -1), (1, 0), (-1, 0)]
    shifted = np.stack([shift(a, *dirs[i % 4]) for i, a in enumerate(u8)])
    return {
        "shift_1px": shifted,
        "noise_0.03": to_u8(x + rng.normal(0, 0.03, x.shape)),
        "contrast_0.9": to_u8(x * 0.9),
        "all_three": to_u8(shifted.astype(np.float32) / 255 * 0.9 + rng.normal(0, 0.03, x.shape)),
    }


def pct(values: np.ndarray, qs: list[float]) -> dict[str, float]:
    out = {}
    for q in qs:
        key = "min" if q == 0 else "max" if q == 100 else f"p{q:g}"
        out[key] = round(float(np.percentile(values, q)), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="synthgen/assets/digits-clip")
    ap.add_argument("--json", default="bench/results/embedder.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(args.model, device="cpu")
    u8, labels = real_images()
    n = len(u8)
    idx = np.arange(n)
    train, test = idx[idx % 5 != 0], idx[idx % 5 == 0]

    def enc(items) -> np.ndarray:
        return st.encode(items, batch_size=args.batch_size, normalize_embeddings=True,
                         convert_to_numpy=True, show_progress_bar=False)

    pil = to_pil(u8)
    enc(pil[:32])  # warm-up
    t0 = time.perf_counter()
    emb = enc(pil)
    enc_s = time.perf_counter() - t0
    throughput = n / enc_s
    txt = enc([caption(c) for c in CLASS_NAMES])

    zero_shot = float(((emb[test] @ txt.T).argmax(1) == labels[test]).mean())
    nn_idx = (emb[test] @ emb[train].T).argmax(1)
    nn_acc = float((labels[train][nn_idx] == labels[test]).mean())

    # max cosine of each held-out real image to any OTHER real image
    sims = emb[test] @ emb.T
    sims[np.arange(len(test)), test] = -np.inf
    max_other = sims.max(1)
    nn_other_same_class = float((labels[sims.argmax(1)] == labels[test]).mean())
    exact_dupes = int(sum(
        (u8[j] == u8[i]).all() for i, j in zip(test, sims.argmax(1))
    ))

    rng = np.random.default_rng(args.seed)
    variants = light_variants(u8[test], rng)
    self_cos = {k: (enc(to_pil(v)) * emb[test]).sum(1) for k, v in variants.items()}
    light = np.concatenate([self_cos[k] for k in ("shift_1px", "noise_0.03", "contrast_0.9")])
    # fraction of copies that are closer to their source than the source's nearest other real image
    copy_beats_other = float(np.mean([(self_cos[k] > max_other).mean() for k in ("shift_1px", "noise_0.03", "contrast_0.9")]))

    results = {
        "model": args.model,
        "split": {"held_out": int(len(test)), "train": int(len(train)), "rule": "held-out = i % 5 == 0"},
        "zero_shot_accuracy": round(zero_shot, 4),
        "nn_retrieval_accuracy": round(nn_acc, 4),
        "encode_images_per_s": round(throughput, 1),
        "encode_batch_size": args.batch_size,
        "threads": args.threads,
        "embedding_dim": int(emb.shape[1]),
        "max_cos_to_other_real": pct(max_other, [50, 90, 99, 99.9, 100]),
        "max_cos_to_other_real_mean": round(float(max_other.mean()), 4),
        "max_cos_to_other_real_same_class": round(nn_other_same_class, 4),
        "max_cos_to_other_real_exact_pixel_dupes": exact_dupes,
        "self_cos_light_transforms": pct(light, [0, 1, 5, 50]),
        "self_cos_by_transform": {k: pct(v, [0, 1, 5, 50]) for k, v in self_cos.items()},
        "copy_closer_than_nearest_other_real": round(copy_beats_other, 4),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine()},
    }

    rows = [
        ("zero-shot accuracy (held-out, 'a handwritten digit {name}')", f"{zero_shot:.4f}"),
        ("NN retrieval accuracy (held-out -> train, cosine)", f"{nn_acc:.4f}"),
        (f"encode throughput (images/s, batch {args.batch_size}, {args.threads} thread)", f"{throughput:.1f}"),
        ("max cos to other real  p50/p90/p99/p99.9/max",
         " / ".join(f"{v:.4f}" for v in results["max_cos_to_other_real"].values())),
        ("self cos, light copies  min/p1/p5/p50",
         " / ".join(f"{v:.4f}" for v in results["self_cos_light_transforms"].values())),
    ]
    rows += [(f"  self cos {k}  min/p1/p5/p50", " / ".join(f"{x:.4f}" for x in v.values()))
             for k, v in results["self_cos_by_transform"].items()]
    rows.append(("light copy closer than nearest other real (fraction)", f"{copy_beats_other:.4f}"))
    w = max(len(r[0]) for r in rows)
    print(f"digits-clip embedder bench ({args.model})")
    print("-" * (w + 40))
    for k, v in rows:
        print(f"{k:<{w}}  {v}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
