"""Audit latency: one sample id in a 10-million-row catalog (target: p95 <= 200 ms).

Builds one dataset in a temp catalog with ``Catalog.write_shard`` and
``Catalog.commit``: ``--rows`` synthetic rows (the real schema; 24-hex random
sample ids, 32-byte image blobs, 4-d embeddings, a few provenance columns) in
``--shards`` shards over ``--commits`` versions, so the id index goes through
a compaction on the way. A final takedown (``catalog.derive.takedown``)
removes a few rows, which then live only in older versions and must still be
found. Then, after one warm-up lookup, times ``audit()`` of existing ids, ids
only in older versions and missing ids, and as the baseline a bare DuckDB
scan ``WHERE sample_id = ?`` over the same shards (what audit did before the
index). Files are in the OS page cache after the build.

    python bench/bench_audit.py [--rows 10000000] [--shards 100] [--commits 20] [--json PATH]
    python bench/bench_audit.py --rows 1000000 --shards 20 --commits 10   # quick run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import duckdb
import numpy as np
import pyarrow as pa

from bench.report import emit
from catalog import Catalog, audit
from catalog.audit import _plan
from catalog.derive import takedown
from catalog.id_index import MAX_SEGMENTS, read_ids_json
from catalog.schema import SCHEMA

TARGET_MS = 200.0
HEX = np.frombuffer(b"0123456789abcdef", np.uint8)


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` random 24-hex-char ids, built in numpy (a Python loop would dominate the build)."""
    chars = HEX[rng.integers(0, 16, (n, 24))]
    return pa.array(np.ascontiguousarray(chars).view("S24").ravel(), pa.binary(24)).cast(pa.string())


def shard_table(rng: np.random.Generator, n: int, offset: int) -> pa.Table:
    """``n`` rows with the catalog schema; columns not set here are null."""
    cols = {name: pa.nulls(n, SCHEMA.field(name).type) for name in SCHEMA.names}
    blobs = pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(rng.bytes(32 * n))])
    emb = rng.standard_normal(4 * n).astype(np.float32)
    label = rng.integers(0, 10, n)
    cols.update(
        sample_id=hex_ids(rng, n),
        image=pa.StructArray.from_arrays([blobs.cast(pa.binary()), pa.nulls(n, pa.string())], ["bytes", "path"]),
        origin=pa.array(["synthetic"] * n),
        status=pa.array(np.where(rng.random(n) < 0.01, "dropped_duplicate", "kept")),
        label=pa.array(label),
        label_name=pa.array(np.char.add("digit-", label.astype(str))),
        prompt=pa.array(np.char.add("a handwritten digit ", label.astype(str))),
        plan_index=pa.array(np.arange(offset, offset + n)),
        seed=pa.array(rng.integers(0, 2**31, n)),
        model_id=pa.array(["embedded:digits-ddpm"] * n),
        scheduler_config=pa.array(['{"num_train_timesteps": 1000, "beta_schedule": "linear"}'] * n),
        embedding=pa.ListArray.from_arrays(pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32)), pa.array(emb)),
        created_at=pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * n, SCHEMA.field("created_at").type),
    )
    return pa.table(cols, schema=SCHEMA)


def build(cat: Catalog, rows: int, shards: int, commits: int, rng: np.random.Generator) -> list[str]:
    """Commit the rows; return 10 random ids of each shard."""
    cat.create("audit", "synthetic")
    per, sample = rows // shards, []
    for c in range(commits):
        refs = []
        for s in range(c * shards // commits, (c + 1) * shards // commits):
            table = shard_table(rng, per, s * per)
            sample += rng.choice(table["sample_id"].to_numpy(zero_copy_only=False), 10).tolist()
            refs.append(cat.write_shard("audit", table))
        with cat.lock("audit"):
            cat.commit("audit", refs, message=f"commit {c + 1}")
    return sample


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t) * 1000


def stats(label: str, ms: list[float], target: str = "") -> dict:
    return {"lookup": label, "n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(max(ms), 2), "target": target}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--commits", type=int, default=20)
    ap.add_argument("--lookups", type=int, default=50)
    ap.add_argument("--scans", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(tmp)
        t0 = time.perf_counter()
        sample = build(cat, args.rows, args.shards, args.commits, rng)
        build_s = time.perf_counter() - t0
        gone = sample[:3]  # taken down: afterwards only older versions hold them
        t0 = time.perf_counter()
        takedown(cat, "audit", "sample_id IN ({})".format(",".join(f"'{i}'" for i in gone)), "benchmark")
        takedown_s = time.perf_counter() - t0
        existing = [str(i) for i in rng.choice(sample[3:], args.lookups, replace=False)]
        missing = hex_ids(rng, 10).to_pylist()  # same shape as real ids: no range pruning
        head = cat.head("audit")
        cold_ms = timed(audit, cat, existing[0])  # first call: parses manifests, hashes segments once
        assert _plan(cat, "audit").segments is not None, "audit did not use the id index"
        hit_ms, old_ms, miss_ms = [], [], []
        for sid in existing:
            hit_ms.append(timed(audit, cat, sid))
        for sid in gone:
            old_ms.append(timed(audit, cat, sid))
            [rec] = audit(cat, sid)
            assert head not in rec.versions and rec.versions, rec.versions
        for sid in missing:
            miss_ms.append(timed(audit, cat, sid))
            assert audit(cat, sid) == []
        files = sorted({str(cat.path("audit") / s.file) for m in cat.versions("audit") for s in m.shards})
        con = duckdb.connect()
        scan = "SELECT * EXCLUDE (image, embedding) FROM read_parquet(?) WHERE sample_id = ?"
        scan_ms = [timed(lambda sid: con.execute(scan, [files, sid]).fetchall(), sid) for sid in existing[: args.scans]]
        segments = read_ids_json(cat, "audit", head)
        mb = lambda folder: round(sum(f.stat().st_size for f in (cat.path("audit") / folder).iterdir()) / 1e6, 1)
        sizes = {"shards_mb": mb("shards"), "id_segments_mb": mb("ids")}
        plan_segments = len(_plan(cat, "audit").segments)
    rows = [
        stats("audit: existing id (id index)", hit_ms, f"p95 <= {TARGET_MS:.0f} ms"),
        stats("audit: id only in older versions", old_ms),
        stats("audit: missing id", miss_ms),
        stats("bare DuckDB full scan WHERE sample_id = ?", scan_ms),
    ]
    ratio = float(np.median(scan_ms) / np.median(hit_ms))
    emit(
        "audit",
        f"Audit one sample id among {args.rows:,} rows ({len(files)} shards, {head} versions), page cache warm",
        rows,
        {"total_rows": args.rows, "shards": len(files), "versions": head, "build_seconds": round(build_s, 1),
         "takedown_seconds": round(takedown_s, 1), "first_call_ms": round(cold_ms, 1),
         "head_id_segments": len(segments), "segments_read_per_lookup": plan_segments,
         "max_segments": MAX_SEGMENTS, **sizes, "ratio_scan_vs_index_p50": round(ratio, 1),
         "target_met": rows[0]["p95_ms"] <= TARGET_MS},
        args.json,
    )
    print(f"build {build_s:.1f} s, takedown {takedown_s:.1f} s, first call {cold_ms:.0f} ms, "
          f"scan/index p50 ratio {ratio:.0f}x")


if __name__ == "__main__":
    main()
