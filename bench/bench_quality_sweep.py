"""Settings sweep of the embedded digits generator: fidelity, diversity, usefulness and speed.

For each (scheduler, steps, guidance) the generator samples ``--per-class``
digits per class (seed 1234, as bench_generator.py) and reports:

- class agreement: an independent scikit-learn SVC trained on the real 8x8
  digits (bench_generator.py) agrees with the requested class;
- precision, recall, density, coverage, Frechet distance and the diversity
  ratio in the embedded CLIP's space (synthgen.quality, as the card), against
  the real training split (file index % 5 != 0, 1,437 digits);
- the diversity ratio in 8x8 pixel space, per class then averaged (the
  measure of issue 14);
- TSTR: the small CNN of examples/train_classifier.py trained on the
  synthetic digits, tested on the held-out real digits (index % 5 == 0);
- the linear probe's TSTR / TRTR in the CLIP's space (synthgen.utility, as
  the card and `synthgen sweep`);
- images/s of sampling on one thread.

The baseline row, in the same run, is *real* data in the synthetic set's
place: the held-out real digits (as many as the synthetic set) against the
same reference, and for TSTR the CNN trained on as many real training
digits. Every score compares equal-size samples (synthgen.quality), so the
baseline shows what a perfect generator would reach at this size.

    python bench/bench_quality_sweep.py [--per-class 36] [--grid dpm++2m:5:2,...] [--epochs 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
from PIL import Image

from bench.bench_generator import real_classifier, to_8x8
from bench.report import emit
from examples.train_classifier import accuracy, fit
from synthgen.digits import CLASS_NAMES, load_digits_uint8, upsample
from synthgen.embedder import load_embedder
from synthgen.generators import load_generator
from synthgen.plan import make_plan
from synthgen.quality import QualityConfig, score_groups, score_set
from synthgen.spec import EmbedderSpec, GeneratorSpec, load_spec
from synthgen.sweep import Rule, measures
from synthgen.utility import utility

DEMO = "jobs/digits-demo.yaml"
TARGET = Rule()  # synthgen sweep's default thresholds: agreement >= 0.98, coverage >= 0.8, per-class diversity >= 0.8
GRID = ("dpm++2m:5:1.0,dpm++2m:5:1.5,dpm++2m:5:2.0,dpm++2m:5:3.0,"
        "dpm++2m:10:1.0,dpm++2m:10:1.5,dpm++2m:10:2.0,dpm++2m:10:3.0,euler_a:10:2.0")


def real_digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, 16, 16) uint8 as `synthgen demo` ingests them, labels, held-out mask (file index % 5 == 0)."""
    images, labels = load_digits_uint8()
    u8 = (upsample(images, 16) * 255).round().astype(np.uint8)
    return u8, labels, np.arange(len(u8)) % 5 == 0


def sample(scheduler: str, steps: int, guidance: float, per_class: int, batch: int):
    """(n, 16, 16) uint8 synthetic digits (rounded like the stored PNGs), their classes, seconds."""
    spec = load_spec(DEMO).model_copy(update={"images_per_condition": per_class, "seed": 1234})
    gen = load_generator(GeneratorSpec(scheduler=scheduler, steps=steps, guidance_scale=guidance, batch_size=batch),
                         "class", list(range(10)))
    plan = make_plan(spec)
    t0 = time.perf_counter()
    images = np.concatenate([gen.generate(plan[i : i + batch]) for i in range(0, len(plan), batch)])
    secs = time.perf_counter() - t0
    u8 = images[..., 0]  # the generator hands back uint8 (quantised on the device), as the stored PNGs
    return u8, np.array([s.class_id for s in plan]), secs


def pixel_diversity(u8: np.ndarray, labels: np.ndarray, ref_u8: np.ndarray, ref_labels: np.ndarray, cfg) -> float:
    """Mean over classes of the diversity ratio in 8x8 pixel space (0..16, the SVC's input)."""
    px = lambda x: to_8x8(x[..., None])  # noqa: E731
    ratios = [score_set(px(u8[labels == c]), px(ref_u8[ref_labels == c]), cfg, group=str(c)).diversity_ratio
              for c in range(10)]
    return float(np.mean(ratios))


def tstr(u8: np.ndarray, labels: np.ndarray, test_x: torch.Tensor, test_y: torch.Tensor, epochs: int) -> float:
    x = torch.from_numpy(u8.astype(np.float32) / 255.0)[:, None]  # as catalog.torch_dataset reads PNGs
    return accuracy(fit(x, torch.from_numpy(labels), epochs), test_x, test_y)


def row(name: str, u8, labels, clf, emb, ref, cfg, test, epochs: int) -> dict:
    """Every score of one set of digits (synthetic, or the real baseline)."""
    ref_u8, ref_labels, ref_emb = ref
    e = emb.embed_images([Image.fromarray(x, mode="L") for x in u8])
    names = [CLASS_NAMES[c] for c in labels]
    ref_names = [CLASS_NAMES[c] for c in ref_labels]
    overall, groups = score_groups(e, names, ref_emb, ref_names, cfg)
    pred = clf.predict(to_8x8(u8[..., None]))
    per = [float((pred[labels == c] == c).mean()) for c in range(10)]
    # The measures `synthgen sweep` reports, from the same library functions.
    m = measures(overall, groups, utility(e, names, ref_emb, ref_names, cfg), float((pred == labels).mean()), None)
    return {
        "setting": name, "n": overall.synthetic_sampled,
        "agreement": round(m.agreement, 4),
        "worst_class": f"{CLASS_NAMES[int(np.argmin(per))]} {min(per):.2f}",
        "precision": round(m.precision, 3), "recall": round(m.recall, 3),
        "density": round(overall.density, 3), "coverage": round(m.coverage, 3),
        "coverage_class_mean": round(float(np.mean([g.coverage for g in groups])), 3),
        "frechet": round(m.frechet, 4),
        "div_clip": round(overall.diversity_ratio, 3),
        "div_clip_class_mean": round(m.diversity, 3),
        "div_px_class_mean": round(pixel_diversity(u8, labels, ref_u8, ref_labels, cfg), 3),
        "tstr": round(tstr(u8, labels, *test, epochs), 4),
        "probe_tstr_ratio": round(m.tstr_ratio, 3),
        "measures": m,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=36, help="36 x 10 = about the 359 held-out real digits")
    ap.add_argument("--grid", default=GRID, help="comma-separated scheduler:steps:guidance")
    ap.add_argument("--batch", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    clf, svc_held_out = real_classifier()
    emb = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
    cfg = QualityConfig()
    u8, labels, held = real_digits()
    train_u8, train_y = u8[~held], labels[~held]
    ref = (train_u8, train_y, emb.embed_images([Image.fromarray(x, mode="L") for x in train_u8]))
    test = (torch.from_numpy(u8[held].astype(np.float32) / 255.0)[:, None], torch.from_numpy(labels[held]))
    # Baseline: real digits in the synthetic set's place (held-out ones: not in the reference).
    base = row("real (held-out)", u8[held], labels[held], clf, emb, ref, cfg, test, args.epochs)
    rng = np.random.default_rng(0)
    same_n = np.sort(rng.choice(len(train_u8), 10 * args.per_class, replace=False))
    base["tstr"] = round(tstr(train_u8[same_n], train_y[same_n], *test, args.epochs), 4)  # TRTR, same size
    base["agreement"] = round(svc_held_out, 4)  # the SVC's own held-out accuracy (it trained on all real)
    base["worst_class"] = ""
    base.pop("measures")
    rows = [base]
    demo = load_spec(DEMO).generator
    for item in args.grid.split(","):
        sched, steps, guidance = item.split(":")
        imgs, ys, secs = sample(sched, int(steps), float(guidance), args.per_class, args.batch)
        r = row(f"{sched} {steps} steps, guidance {float(guidance):g}", imgs, ys, clf, emb, ref, cfg, test, args.epochs)
        r["img_per_s"] = round(len(imgs) / secs, 1)
        r["tstr_ratio"] = round(r["tstr"] / base["tstr"], 3)
        r["meets_target"] = "" if TARGET.misses(r.pop("measures")) else "yes"
        if (sched, int(steps), float(guidance)) == (demo.scheduler, demo.steps, demo.guidance_scale):
            r["setting"] += " (demo)"
        rows.append(r)
        print(r, flush=True)
    emit("quality_sweep",
         f"Settings sweep of the embedded generator vs real digits (k={cfg.k}, seed {cfg.seed}; "
         f"baseline: held-out real digits in the synthetic set's place)",
         rows, {"per_class": args.per_class, "k": cfg.k, "seed": cfg.seed, "svc_held_out_accuracy": svc_held_out,
                "reference_rows": len(train_u8), "test_rows": int(held.sum()), "epochs": args.epochs,
                "target": TARGET.describe(), "wall_s": time.perf_counter() - t_start},
         args.json)


if __name__ == "__main__":
    main()
