"""`verify --regenerate`: batched regeneration vs the one-sample-per-batch loop it replaced.

Needs a data folder with the demo (``synthgen --data-dir DIR demo``). The
same rows are regenerated twice in one process: the bare baseline is the
old path (each sample alone, padded to the recorded batch size); the
batched path is ``regenerate_sample_check`` (groups by settings, padded
batches of the recorded size). The baseline runs on the first
``--baseline`` rows only (it costs one full batch per row); both must give
the recorded hashes.

    python bench/bench_regenerate.py --data-dir /tmp/wt13-data [--n 100] [--baseline 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb

from bench.report import emit
from catalog import Catalog, open_version
from flows.job.regenerate import ROW_COLUMNS, generator_for, regenerate_sample_check
from synthgen.imaging import array_to_pil, pixel_sha256
from synthgen.records import Sample
from synthgen.runtime import set_threads


def one_at_a_time(cat: Catalog, ref: str, n: int, seed: int = 0) -> tuple[float, int, int]:
    """The old loop on the first ``n`` rows of the same choice: (seconds, checked, matched)."""
    t0 = time.perf_counter()
    set_threads(1)
    rows_t = open_version(cat, ref).table(ROW_COLUMNS, status="all", origin="synthetic")  # noqa: F841 - DuckDB
    rows = duckdb.sql(f"SELECT * FROM rows_t ORDER BY hash(sample_id || '{seed}') LIMIT {n}").to_arrow_table().to_pylist()
    gen = generator_for(rows[0])
    matched = 0
    for r in rows:
        s = Sample(r["sample_id"], "synthetic", seed=r["seed"], class_id=r["label"], class_name=r["label_name"])
        matched += pixel_sha256(array_to_pil(gen.generate([s])[0])) == r["image_sha256"]
    return time.perf_counter() - t0, len(rows), matched


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--ref", default="digits-synth@1")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--baseline", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    cat = Catalog(Path(a.data_dir) / "catalog")
    base_s, base_n, base_ok = one_at_a_time(cat, a.ref, a.baseline)
    r = regenerate_sample_check(cat, a.ref, a.n)
    base_rate, rate = base_n / base_s, r.images_per_s
    rows = [
        {"path": "one at a time (bare baseline)", "images": base_n, "identical": base_ok, "seconds": base_s,
         "images_per_s": base_rate, "ratio": 1.0},
        {"path": "batched by settings", "images": r.checked, "identical": r.matched, "seconds": r.elapsed_s,
         "images_per_s": rate, "ratio": rate / base_rate},
    ]
    emit("regenerate", f"verify --regenerate on {a.ref}: images/s, batched vs one at a time", rows,
         {"groups": [g.label() for g in r.groups], "batch_size": r.groups[0].settings["batch_size"]}, a.json)


if __name__ == "__main__":
    main()
