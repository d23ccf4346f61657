"""Real-image guidance vs plain sampling on the embedded digits model, at equal size, through ``run_job``.

The real digits (16 px, as ``synthgen demo`` ingests them) are split by file
index so nothing is scored against what it was made from:

- A (index % 5 in {1, 2}): ingested as ``digits-real``: the init images the
  guided job starts from, and the memorisation guard's reference;
- B (index % 5 in {3, 4}): trains the independent classifier, a scikit-learn
  SVC on 8x8 pixels (bench_generator.py's; not the project's embedder);
- C (index % 5 == 0): held out: the classifier's own accuracy, and the test
  set of train-on-synthetic / test-on-real.

Each job (plain: the demo's generator settings from noise; guided: the same
plus ``conditioning.init_images: {dataset: digits-real, strength: S}``)
makes ``--per-class`` images per class and is decided and committed like any
job (guard against digits-real, dedup). On the kept rows it reports:

- class agreement of the SVC with the requested class;
- for guided rows: the share naming a real source of their own class, the
  pixel distance to the source (median; the least of the kept rows), how many
  blocked rows were within the copy threshold of their source (pixel distance
  <= dedup.pixel_threshold), and the others: by CLIP cosine >= real_threshold
  to a real image (to their own source or not), or within the pixel threshold
  of another real image. None is blocked for merely resembling its source;
- precision, recall, coverage and the diversity ratio in the embedded CLIP's
  space (``synthgen.quality``, as the card) against A+B, per class averaged;
- TSTR: a logistic-regression linear probe on the rows' stored CLIP
  embeddings, tested on C's embeddings; the baseline row trains it on as many
  real digits of A+B (TRTR). The probe is local to this benchmark (another
  change adds a library function for it in synthgen/quality*).

    python bench/bench_real_guidance.py [--per-class 50] [--strengths 0.6] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch
from PIL import Image

from bench.bench_generator import to_8x8
from bench.report import emit
from catalog import Catalog, ingest_folder, open_version
from flows.job.run import run_job
from flows.settings import Paths
from synthgen.digits import CLASS_NAMES, load_digits_uint8, upsample
from synthgen.embedder import load_embedder
from synthgen.imaging import decode
from synthgen.quality import QualityConfig, score_groups
from synthgen.spec import EmbedderSpec, load_spec

DEMO = "jobs/digits-demo.yaml"


def split_digits():
    """16-px uint8 real digits, labels, and the A / B / C masks (file index % 5)."""
    images, labels = load_digits_uint8()
    u8 = (upsample(images, 16) * 255).round().astype(np.uint8)
    r = np.arange(len(u8)) % 5
    return u8, labels, np.isin(r, (1, 2)), np.isin(r, (3, 4)), r == 0


def write_folder(root: Path, u8: np.ndarray, labels: np.ndarray, index: np.ndarray) -> Path:
    """A class-folder export (the layout ``synthgen ingest`` reads) of the given rows."""
    for i in index:
        folder = root / CLASS_NAMES[labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(u8[i], mode="L").save(folder / f"{i:04d}.png")
    return root


def job_spec(name: str, per_class: int, strength: float | None) -> dict:
    spec = load_spec(DEMO).model_dump(mode="json")
    spec.update(name=name, images_per_condition=per_class, seed=1234)
    spec["output"] = {"dataset": name, "shard_size": 500}
    spec["generator"]["batch_size"] = 100
    if strength is not None:
        spec["conditioning"]["init_images"] = {"dataset": "digits-real@1", "strength": strength}
    return spec


def linear_probe(train_x, train_y, test_x, test_y) -> float:
    """Accuracy of a logistic-regression probe (train-on-X / test-on-real) in the embedder's space."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, C=1.0).fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def mean_of(values) -> float | None:
    """Mean of the classes that have a value (a class with <= k rows has none), rounded."""
    vals = [v for v in values if v is not None]
    return round(float(np.mean(vals)), 3) if vals else None


def scores(name, u8, labels, emb, clf, ref, cfg, test) -> dict:
    """Agreement, CLIP-space set scores per class, and the probe's TSTR for one set of kept digits."""
    ref_emb, ref_labels = ref
    names = [CLASS_NAMES[c] for c in labels]
    overall, groups = score_groups(emb, names, ref_emb, [CLASS_NAMES[c] for c in ref_labels], cfg)
    pred = clf.predict(to_8x8(u8[..., None]))
    per = [float((pred[labels == c] == c).mean()) for c in range(10)]
    return {
        "setting": name, "kept": len(u8),
        "agreement": round(float((pred == labels).mean()), 4),
        "worst_class": f"{CLASS_NAMES[int(np.argmin(per))]} {min(per):.2f}",
        "precision": round(overall.precision, 3), "recall": round(overall.recall, 3),
        "coverage": round(overall.coverage, 3),
        "coverage_class_mean": mean_of(g.coverage for g in groups),
        "div_clip_class_mean": mean_of(g.diversity_ratio for g in groups),
        "tstr_probe": round(linear_probe(emb, labels, *test), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--strengths", default="0.6", help="comma-separated strengths of the guided jobs")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sklearn.svm import SVC

    t_start = time.perf_counter()
    u8, labels, a, b, c = split_digits()
    clf = SVC(gamma=0.001, C=10).fit(to_8x8(u8[b][..., None]), labels[b])
    svc_held_out = float(clf.score(to_8x8(u8[c][..., None]), labels[c]))
    emb = load_embedder(EmbedderSpec())
    embed = lambda x: emb.embed_images([Image.fromarray(i, mode="L") for i in x])  # noqa: E731
    cfg = QualityConfig()
    ab = a | b
    ref = (embed(u8[ab]), labels[ab])
    test = (embed(u8[c]), labels[c])
    tmp = Path(tempfile.mkdtemp(prefix="bench-real-guidance-"))
    try:
        paths = Paths(tmp / "data")
        cat = Catalog(paths.catalog)
        ingest_folder(cat, "digits-real", write_folder(tmp / "real", u8, labels, np.flatnonzero(a)),
                      emb.embed_images, emb.name)
        real = open_version(cat, "digits-real").table(["sample_id", "label_name"]).to_pylist()
        real_class = {r["sample_id"]: r["label_name"] for r in real}
        # Baseline: as many real digits of A+B as a job makes, in the synthetic set's place (TRTR for the probe).
        n = 10 * args.per_class
        pick = np.sort(np.random.default_rng(0).choice(int(ab.sum()), n, replace=False))
        base = scores(f"real (A+B, {n})", u8[ab][pick], labels[ab][pick], ref[0][pick], clf, ref, cfg, test)
        base.update(agreement=round(svc_held_out, 4), worst_class="(SVC on C)", coverage="", precision="",
                    recall="", coverage_class_mean="", div_clip_class_mean="")
        rows = [base]
        for strength in [None, *(float(s) for s in args.strengths.split(","))]:
            name = "plain" if strength is None else f"guided-{strength:g}"
            t0 = time.perf_counter()
            result = run_job(job_spec(f"digits-{name}".replace(".", "-"), args.per_class, strength), paths=paths)
            secs = time.perf_counter() - t0
            t = open_version(cat, f"{result.dataset}@{result.version}").table(
                ["image", "label", "label_name", "embedding", "status", "drop_reason", "init_image_id",
                 "init_distance", "real_nn_id", "real_nn_similarity", "real_threshold"], status="all").to_pylist()
            kept = [r for r in t if r["status"] == "kept"]
            images = np.stack([np.asarray(decode(r["image"]["bytes"])) for r in kept])
            r = scores(name, images, np.array([r["label"] for r in kept]),
                       np.array([r["embedding"] for r in kept], np.float32), clf, ref, cfg, test)
            r["tstr_ratio"] = round(r["tstr_probe"] / base["tstr_probe"], 3)
            r["blocked"] = sum(x["status"] == "blocked_real_copy" for x in t)
            r["job_s"] = round(secs, 1)  # the first job also loads the models
            if strength is not None:
                dist = np.array([x["init_distance"] for x in t])
                thr = load_spec(DEMO).dedup.pixel_threshold
                blocked = [x for x in t if x["status"] == "blocked_real_copy"]
                r["source_own_class"] = round(float(np.mean([real_class[x["init_image_id"]] == x["label_name"]
                                                               for x in t])), 4)
                r["blocked_near_source"] = sum(x["init_distance"] <= thr for x in blocked)  # copies of their source
                other = [x for x in blocked if x["init_distance"] > thr]
                clip = [x for x in other if x["real_nn_similarity"] >= x["real_threshold"] - 1e-6]
                r["blocked_clip"] = len(clip)  # CLIP cosine >= real_threshold to a real image ...
                # ... of which to their own source
                r["blocked_clip_own_source"] = sum(x["real_nn_id"] == x["init_image_id"] for x in clip)
                r["blocked_pixel_other"] = len(other) - len(clip)  # within the pixel threshold of another real image
                r["source_dist_median"] = round(float(np.median(dist)), 3)
                r["source_dist_min_kept"] = round(min(x["init_distance"] for x in kept), 3)
            rows.append(r)
            print(r, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit("real_guidance",
         f"Real-image guidance vs plain sampling, {args.per_class} per class, embedded digits model "
         f"(SVC trained on split B, held-out accuracy {svc_held_out:.3f} on C; TSTR probe tested on C)",
         rows, {"per_class": args.per_class, "strengths": args.strengths, "k": cfg.k, "seed": cfg.seed,
                "svc_held_out_accuracy": svc_held_out, "rows": {"A_sources": int(a.sum()), "B_classifier": int(b.sum()),
                                                                 "C_test": int(c.sum())},
                "pixel_threshold": load_spec(DEMO).dedup.pixel_threshold, "wall_s": time.perf_counter() - t_start},
         args.json)


if __name__ == "__main__":
    main()
