"""Demo end to end, and the pipeline's overhead over a bare sampling loop.

A. ``synthgen demo`` in a fresh data folder, as a user runs it (subprocess:
   imports, Prefect's temporary server, MLflow, model loading, ingest of the
   real digits, 1,000 images). Target: <= 90 s on two cores.
B. In one process: a bare loop over the same model, sampler and batch size
   (no encoding, embedding, dedup, Parquet, Prefect or MLflow), then the full
   flow on the same spec, then the bare loop again. The flow's time is split
   into fixed start-up (Prefect server, MLflow run, model loading) and the
   rest. Target: rest / bare <= 1.10.

    python bench/bench_demo.py [--json PATH] [--skip-cli]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import emit  # noqa: E402

SPEC = REPO / "jobs" / "digits-demo.yaml"


def cli_demo(tmp: Path) -> float:
    exe = Path(sys.executable).parent / "synthgen"
    t0 = time.perf_counter()
    subprocess.run([str(exe), "--data-dir", str(tmp / "cli"), "demo"], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bare_loop(spec) -> float:
    from synthgen.generators import load_generator
    from synthgen.plan import make_plan
    from synthgen.runtime import set_threads

    set_threads(spec.generator.threads)
    gen = load_generator(spec.generator, "class", [c.id for c in spec.conditioning.classes])
    plan = make_plan(spec)
    t0 = time.perf_counter()
    for i in range(0, len(plan), gen.batch_size):
        gen.generate(plan[i : i + gen.batch_size])
    return time.perf_counter() - t0


def flow_run(spec, tmp: Path) -> tuple[float, dict]:
    from catalog import Catalog, ingest_folder
    from flows.settings import configure
    from synthgen.digits import CLASS_NAMES, export_image_folder
    from synthgen.embedder import load_embedder

    paths = configure(tmp / "flow")
    folder = export_image_folder(tmp / "digits")
    (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    emb = load_embedder(spec.embedder)
    ingest_folder(Catalog(paths.catalog), "digits-real", folder, emb.embed_images, emb.name)
    from flows.generate import generate_dataset

    t0 = time.perf_counter()
    result = generate_dataset(spec.model_dump(mode="json"), str(paths.root))
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-cli", action="store_true")
    args = ap.parse_args()
    from synthgen.spec import load_spec

    spec = load_spec(SPEC)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_cli:
            wall = cli_demo(tmp)
            rows.append({"measure": "A. `synthgen demo`, fresh folder (subprocess, all start-up)",
                         "seconds": round(wall, 2), "images_per_s": round(1000 / wall, 1), "target": "<= 90 s"})
            print(rows[-1], flush=True)
        bare1 = bare_loop(spec)
        call_s, result = flow_run(spec, tmp)
        bare2 = bare_loop(spec)
    bare = (bare1 + bare2) / 2
    m = result["metrics"]
    rest = m["wall_s"] - m["startup_s"]
    startup = call_s - rest
    per_image = rest - m["finish_s"]
    rows += [
        {"measure": "B. bare sampling loop (mean of before/after)", "seconds": round(bare, 2),
         "images_per_s": round(1000 / bare, 1), "target": ""},
        {"measure": "B. flow total (in-process call)", "seconds": round(call_s, 2),
         "images_per_s": round(1000 / call_s, 1), "target": ""},
        {"measure": "B. flow fixed start-up (Prefect server, MLflow, models)", "seconds": round(startup, 2),
         "images_per_s": "", "target": ""},
        {"measure": "B. flow rest (sample+encode+embed+dedup+write+log)", "seconds": round(rest, 2),
         "images_per_s": round(1000 / rest, 1), "target": ""},
        {"measure": "B.   of which fixed finishing (grid, card, histogram, MLflow artifacts)",
         "seconds": round(m["finish_s"], 2), "images_per_s": "", "target": ""},
        {"measure": "B. overhead ratio rest / bare", "seconds": round(rest / bare, 3), "images_per_s": "",
         "target": "<= 1.10"},
        {"measure": "B. per-image ratio (rest - finishing) / bare", "seconds": round(per_image / bare, 3),
         "images_per_s": "", "target": ""},
    ]
    emit("demo", "Demo end to end and pipeline overhead (1,000 images, 2 cores)", rows,
         {"bare_runs_s": [bare1, bare2], "flow_metrics": m, "kept": result["counts"]}, args.json)


if __name__ == "__main__":
    main()
