"""Class agreement of the embedded digits generator.

A scikit-learn SVC trained on the real 8x8 digits judges generated samples
(downsampled 16x16 -> 8x8 by 2x2 averaging): agreement = share of samples
classified as the class they were conditioned on. Target: >= 95% at the
demo's sampler settings (jobs/digits-demo.yaml: DPM-Solver++ 2M, 5 steps, guidance 2).

    python bench/bench_generator.py [--per-class 50] [--json PATH]
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

from bench.report import emit
from synthgen.digits import CLASS_NAMES, load_digits_uint8
from synthgen.generators import load_generator
from synthgen.plan import make_plan
from synthgen.spec import GeneratorSpec, load_spec


def real_classifier():
    """SVC on the real digits; returns (model, held-out accuracy on a 25% split)."""
    from sklearn.model_selection import train_test_split
    from sklearn.svm import SVC

    images, labels = load_digits_uint8()
    x = images.reshape(len(images), -1) / 255.0 * 16
    xtr, xte, ytr, yte = train_test_split(x, labels, test_size=0.25, random_state=0, stratify=labels)
    held_out = SVC(gamma=0.001, C=10).fit(xtr, ytr).score(xte, yte)
    return SVC(gamma=0.001, C=10).fit(x, labels), held_out


def to_8x8(images: np.ndarray) -> np.ndarray:
    """(n, 16, 16, 1) uint8 -> (n, 64) in the SVC's 0..16 scale."""
    x = images[..., 0] / 255.0
    x = x.reshape(len(x), 8, 2, 8, 2).mean(axis=(2, 4))
    return x.reshape(len(x), -1) * 16


def agreement(clf, guidance: float, steps: int, per_class: int, batch: int) -> tuple[float, float, list[float]]:
    spec = load_spec("jobs/digits-demo.yaml").model_copy(
        update={"images_per_condition": per_class, "seed": 1234}
    )
    gen = load_generator(
        GeneratorSpec(scheduler="dpm++2m", steps=steps, guidance_scale=guidance, batch_size=batch), "class",
        list(range(10)),
    )
    plan = make_plan(spec)
    t0 = time.perf_counter()
    images = np.concatenate([gen.generate(plan[i : i + batch]) for i in range(0, len(plan), batch)])
    secs = time.perf_counter() - t0
    want = np.array([s.class_id for s in plan])
    pred = clf.predict(to_8x8(images))
    per = [float((pred[want == c] == c).mean()) for c in range(10)]
    return float((pred == want).mean()), len(plan) / secs, per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf, held_out = real_classifier()
    demo = load_spec("jobs/digits-demo.yaml").generator
    rows = []
    for steps, guidance in [(10, 2.0), (5, 2.0), (20, 2.0), (10, 1.0), (10, 3.0), (10, 4.0)]:
        acc, ips, per = agreement(clf, guidance, steps, args.per_class, args.batch)
        rows.append({
            "steps": steps, "guidance": guidance, "samples": 10 * args.per_class,
            "agreement": round(acc, 4), "worst_class": f"{CLASS_NAMES[int(np.argmin(per))]} {min(per):.2f}",
            "img_per_s_1thread": round(ips, 1), "demo_setting": "yes" if (steps, guidance) == (demo.steps, demo.guidance_scale) else "",
        })
        print(rows[-1], flush=True)
    emit("generator", f"Class agreement (SVC on real digits, held-out acc {held_out:.3f}); target >= 0.95 at demo setting",
         rows, {"svc_held_out_accuracy": held_out, "target": 0.95}, args.json)


if __name__ == "__main__":
    main()
