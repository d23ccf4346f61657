"""Does the linear probe rank sweep settings as an independent pixel-space classifier does?

Runs ``synthgen sweep`` (the real CLI) over the digits demo's grid, then,
for each setting's probe version, trains an independent classifier on the
probe's kept *pixels* (an RBF SVC on 8x8 digits, examples/digits_classifier.py's
model, which never sees the project's embedder) and tests it on the same
held-out real digits the linear probe is tested on (``synthgen.utility.split_real``
of digits-real). Both sides are train-on-synthetic / test-on-real as a ratio
to train-on-real at the same size. Reported: both rankings, Spearman's rho,
and for contrast the ranking by class agreement of the SVC trained on all
real digits (fidelity, not utility).

    python bench/bench_sweep_utility.py --data-dir DIR [--per-setting 360] [--guidance 1,1.5,2,3,5,8] [--steps 5,10]

DIR needs digits-real (as `synthgen demo` ingests it); it is ingested when missing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import yaml
from PIL import Image
from scipy.stats import spearmanr
from sklearn.svm import SVC

from bench.report import emit
from catalog import Catalog, ingest_folder, open_version
from examples.digits_classifier import pixels_8x8, svc
from flows.settings import configure
from synthgen.quality import group_rng, sample_indices
from synthgen.utility import split_real

DEMO = REPO / "jobs" / "digits-demo.yaml"
DEMO_GUIDANCE = ("1", "1.5", "2", "3")  # bench_quality_sweep.py's guidance values (its grid: these x 5, 10 steps)


def ensure_real(data: Path) -> None:
    """digits-real in DIR's catalog, as `synthgen demo` ingests it."""
    cat = Catalog(configure(data).catalog)
    if cat.exists("digits-real"):
        return
    from synthgen.digits import CLASS_NAMES, export_image_folder
    from synthgen.embedder import load_embedder
    from synthgen.spec import EmbedderSpec

    emb = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_image_folder(Path(tmp) / "digits")
        (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
        ingest_folder(cat, "digits-real", folder, emb.embed_images, emb.name)


def images_and_labels(cat: Catalog, ref: str, origin: str | None = None) -> tuple[list[Image.Image], list[str]]:
    t = open_version(cat, ref).table(["image", "label_name", "origin"])
    keep = [i for i, o in enumerate(t["origin"].to_pylist()) if origin is None or o == origin]
    cells, names = t["image"].to_pylist(), t["label_name"].to_pylist()
    return [Image.open(io.BytesIO(cells[i]["bytes"])) for i in keep], [names[i] for i in keep]


def pixel_accuracy(train_x, train_y, test_x, test_y) -> float:
    return float((SVC(gamma=0.001, C=10).fit(train_x, train_y).predict(test_x) == test_y).mean())


def ranks(values: list[float]) -> list[int]:
    """1 = best (highest); ties share the order they come in."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    out = [0] * len(values)
    for r, i in enumerate(order, 1):
        out[i] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--per-setting", type=int, default=360)
    ap.add_argument("--guidance", default="1,1.5,2,3,5,8")
    ap.add_argument("--steps", default="5,10")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = Path(args.data_dir)
    ensure_real(data)
    out = data / "sweeps" / "bench-sweep-utility"
    cmd = [sys.executable, "-m", "flows.cli", "--data-dir", str(data), "sweep", str(DEMO),
           "--grid", f"generator.guidance_scale={args.guidance}", "--grid", f"generator.steps={args.steps}",
           "--per-setting", str(args.per_setting), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if proc.returncode not in (0, 1):  # 1: no setting met the thresholds (the table is written all the same)
        sys.exit(proc.stdout + proc.stderr)
    sweep = json.loads((out / "sweep.json").read_text())
    sweep_s = time.perf_counter() - t0

    cat = Catalog(configure(data).catalog)
    real_imgs, real_names = images_and_labels(cat, "digits-real")
    train, test = split_real(real_names, seed=0)  # the linear probe's split (QualityConfig().seed)
    rx, ry = pixels_8x8(real_imgs), np.array(real_names, object)
    names = [c["name"] for c in yaml.safe_load(DEMO.read_text())["conditioning"]["classes"]]
    judge = svc(names)  # trained on all real digits: class agreement (fidelity), for contrast
    rows = []
    for s in sweep["settings"]:
        imgs, labels = images_and_labels(cat, s["version"], "synthetic")
        sx, sy = pixels_8x8(imgs), np.array(labels, object)
        n = min(len(sx), len(train))
        same_n = train[sample_indices(len(train), n, group_rng(0, "bench-pixel-trtr"))]
        tstr = pixel_accuracy(sx[:n], sy[:n], rx[test], ry[test])
        trtr = pixel_accuracy(rx[same_n], ry[same_n], rx[test], ry[test])
        rows.append({"setting": s["setting"], "rows": s["rows"], "probe_tstr": s["tstr"],
                     "probe_tstr_ratio": s["tstr_ratio"], "pixel_tstr": round(tstr, 4),
                     "pixel_tstr_ratio": round(tstr / trtr, 4),
                     "svc_agreement": round(float(np.mean([p == g for p, g in zip(judge(imgs), labels)])), 4)})
    probe_rank = ranks([r["probe_tstr_ratio"] for r in rows])
    pixel_rank = ranks([r["pixel_tstr_ratio"] for r in rows])
    agree_rank = ranks([r["svc_agreement"] for r in rows])
    for r, a, b, c in zip(rows, probe_rank, pixel_rank, agree_rank):
        r |= {"rank_probe": a, "rank_pixel": b, "rank_agreement": c}
    rho = spearmanr([r["probe_tstr_ratio"] for r in rows], [r["pixel_tstr_ratio"] for r in rows])
    demo = [r for r in rows if r["setting"].split(",")[0].split("=")[1] in DEMO_GUIDANCE]  # the demo's own grid
    rho_demo = spearmanr([r["probe_tstr_ratio"] for r in demo], [r["pixel_tstr_ratio"] for r in demo])
    rho_raw = spearmanr([r["probe_tstr"] for r in rows], [r["pixel_tstr"] for r in rows])
    rho_agree = spearmanr([r["probe_tstr_ratio"] for r in rows], [r["svc_agreement"] for r in rows])
    emit("sweep_utility",
         f"Linear probe (CLIP space) vs pixel-space SVC, TSTR / TRTR per sweep setting ({args.per_setting} images "
         f"per setting, {len(test)} held-out real digits): Spearman rho {rho.statistic:.3f} (p {rho.pvalue:.3g})",
         rows, {"spearman_probe_vs_pixel": rho.statistic, "p_probe_vs_pixel": rho.pvalue,
                "spearman_probe_vs_svc_agreement": rho_agree.statistic,
                "spearman_demo_grid": rho_demo.statistic, "p_demo_grid": rho_demo.pvalue, "demo_grid_settings": len(demo),
                "spearman_tstr_unnormalised": rho_raw.statistic,
                "exact_ranking_equal": probe_rank == pixel_rank, "test_rows": int(len(test)),
                "sweep_chosen": sweep["chosen"], "rule": sweep["rule"]["text"], "sweep_s": sweep_s,
                "wall_s": time.perf_counter() - t0, "command": " ".join(cmd[2:])},
         args.json)


if __name__ == "__main__":
    main()
