"""Load throughput: a version of >= 200 MB into one Arrow table (target >= 500 MB/s).

Builds a synthetic-looking version (incompressible image bytes, full schema)
in a temp catalog, then times ``open_version(...).table()`` (all columns, all
rows) and a bare ``pyarrow.parquet.read_table`` of the same files as the
baseline. The files are in the OS page cache after writing: this measures
decode + assembly, not the disk.

    python bench/bench_load.py [--mb 240] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.report import emit
from catalog import Catalog, open_version
from catalog.schema import SCHEMA


def build(cat: Catalog, mb: int, row_kb: int = 16, shards: int = 8) -> int:
    rows = mb * 1024 // row_kb
    rng = np.random.default_rng(0)
    cat.create("load", "synthetic")
    per = rows // shards
    refs = []
    for s in range(shards):
        blobs = [rng.bytes(row_kb * 1024) for _ in range(per)]
        cols = {n: pa.nulls(per, SCHEMA.field(n).type) for n in SCHEMA.names}
        cols["sample_id"] = pa.array([f"s{s}-{i}" for i in range(per)])
        cols["image"] = pa.StructArray.from_arrays([pa.array(blobs, pa.binary()), pa.nulls(per, pa.string())],
                                                   names=["bytes", "path"])
        cols["origin"] = pa.array(["synthetic"] * per)
        cols["status"] = pa.array(["kept"] * per)
        cols["label"] = pa.array(rng.integers(0, 10, per))
        refs.append(cat.write_shard("load", pa.table(cols, schema=SCHEMA)))
    with cat.lock("load"):
        cat.commit("load", refs)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=240)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(tmp)
        rows = build(cat, args.mb)
        v = open_version(cat, "load")
        size = sum(os.path.getsize(f) for f in v.files)
        best_cat = best_bare = best_first = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            open_version(Catalog(tmp), "load").table(status="all")  # a new instance: shards hashed again
            best_first = min(best_first, time.perf_counter() - t)
            t = time.perf_counter()
            bare = pa.concat_tables([pq.read_table(f) for f in v.files])
            best_bare = min(best_bare, time.perf_counter() - t)
            t = time.perf_counter()
            table = v.table(status="all")
            best_cat = min(best_cat, time.perf_counter() - t)
        assert table.num_rows == bare.num_rows == rows // 8 * 8
    mbs = lambda s: size / s / 1e6
    rows_out = [
        {"reader": "bare pyarrow.parquet.read_table", "MB": round(size / 1e6, 1), "seconds": round(best_bare, 3),
         "MB_per_s": round(mbs(best_bare)), "target": ""},
        {"reader": "catalog open_version().table()", "MB": round(size / 1e6, 1), "seconds": round(best_cat, 3),
         "MB_per_s": round(mbs(best_cat)), "target": ">= 500 MB/s"},
        {"reader": "same, first read (shards hashed)", "MB": round(size / 1e6, 1), "seconds": round(best_first, 3),
         "MB_per_s": round(mbs(best_first)), "target": ""},
    ]
    emit("load", f"Load a {size / 1e6:.0f} MB version into Arrow (best of {args.repeat}, page cache warm)", rows_out,
         {"rows": rows, "ratio_catalog_vs_bare": best_cat / best_bare,
          "ratio_first_read_vs_bare": best_first / best_bare}, args.json)


if __name__ == "__main__":
    main()
