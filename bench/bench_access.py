"""Showing blocked copies beside an open real set: does the real set still hold the rows they copy?

``catalog.access.missing`` answers that for every read of excluded rows (a web page's thumbnails,
an audit, a load): a copy is shown only if its open real set holds, at its head, every row it was
matched to. It looks a few ids up in the real set's id index (``catalog.id_index.version_lacks``),
as many as ``ROWS_PER_LOOKUP`` says are cheaper than a scan;
the baseline is what it did before, and still does for many ids or no index: read every head
shard's ``sample_id`` column and test membership.

Builds one dataset of ``--rows`` rows (``bench_audit``'s builder: the real schema, random 24-hex
ids) in ``--shards`` shards over ``--commits`` versions, then times, for 1, 16 and 256 ids held
and one id not held: ``missing`` as the readers call it, and the bare scan, in the same run.
Files are in the OS page cache after the build.

    python bench/bench_access.py [--rows 1000000] [--shards 20] [--commits 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.bench_audit import build, hex_ids
from bench.report import emit
from catalog import Catalog
from catalog.access import missing
from catalog.id_index import version_lacks


def scan(cat: Catalog, name: str, ids: set[str]) -> bool:
    """The baseline: every head shard's ``sample_id`` column read, then a membership test."""
    files = [cat.path(name) / ref.file for ref in cat.manifest(name).shards]
    column = pa.concat_tables([pq.read_table(f, columns=["sample_id"]) for f in files])["sample_id"]
    found = column.filter(pc.is_in(column, value_set=pa.array(sorted(ids), pa.string())))
    return set(found.to_pylist()) >= ids


def best_ms(fn, repeats: int) -> tuple[float, object]:
    """The fastest of ``repeats`` calls (a shared machine's noise only adds), and the answer."""
    times, answer = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        answer = fn()
        times.append((time.perf_counter() - t) * 1000)
    return min(times), answer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--commits", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(tmp)
        sample = build(cat, args.rows, args.shards, args.commits, rng)
        head = cat.head("audit")
        assert version_lacks(cat, "audit", head, {sample[0]}) == set(), "the id index was not used"
        absent = hex_ids(rng, 1).to_pylist()
        rows = []
        for label, ids in (("1 held", {sample[0]}), ("16 held", set(sample[:16])), ("256 held", set(sample[:256])),
                           ("1 not held", {absent[0]})):
            index_ms, got = best_ms(lambda: not missing(cat, "audit", ids), args.repeats)
            scan_ms, want = best_ms(lambda: scan(cat, "audit", ids), args.repeats)
            assert got == want, (label, got, want)
            rows.append({"ids": label, "missing_ms": round(index_ms, 2), "scan_ms": round(scan_ms, 2),
                         "scan_per_missing": round(scan_ms / index_ms, 1), "all_held": got})
    emit("access", f"missing: id index vs a scan of the sample_id column ({args.rows:,} rows, {args.shards} shards)",
         rows, {"rows_in_set": args.rows, "shards": args.shards, "commits": args.commits}, args.json)


if __name__ == "__main__":
    main()
