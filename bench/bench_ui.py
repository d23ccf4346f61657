"""``synthgen ui`` server time: gallery pages and a sample page at 10^4 and 10^6 rows (flat in size?).

Builds one synthetic dataset per size in a temp catalog with
``Catalog.write_shard`` and ``Catalog.commit`` (stub rows from
``bench_audit.shard_table``: the real schema, 32-byte stub images, with
statuses and similarities set: 89% kept, 10% dropped, 1% blocked). The app
runs in this process (Starlette's test client, no socket); each request's
server time is the app's own ``Server-Timing`` header (middleware to
response). Pages, each after one warm-up request: the gallery's first page,
a later page (keyset, 90% of the way in), a filtered page (blocked rows,
sorted by real-neighbour similarity, with a similarity range) and a sample
page (random ids). Requests to the two sizes alternate, so the shared
machine's load falls on both alike. The baseline is the bare upload form (no catalog read)
in the same run; the first visit of a version (its gallery index is built
then, once) is reported apart.

Goals: p95 < 300 ms for gallery pages, < 200 ms for the sample page, and
10^6 rows within 1.5x of 10^4.

    python bench/bench_ui.py [--sizes 10000 1000000] [--repeats 40] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import pyarrow as pa
from starlette.testclient import TestClient

from bench.bench_audit import shard_table
from bench.report import emit
from catalog import Catalog
from flows.ui.app import create_app
from flows.ui.config import UiConfig

GOAL_MS = {"gallery": 300.0, "sample": 200.0}
FLAT = 1.5
SHARD_ROWS = 100_000


def stub_rows(rng: np.random.Generator, n: int, offset: int) -> pa.Table:
    """``bench_audit``'s stub rows with the columns a gallery filters and sorts on."""
    t = shard_table(rng, n, offset)
    u = rng.random(n)
    status = np.where(u < 0.01, "blocked_real_copy", np.where(u < 0.11, "dropped_duplicate", "kept"))
    sims = {"status": pa.array(status), "nn_similarity": pa.array(rng.random(n).astype(np.float32)),
            "real_nn_similarity": pa.array(rng.random(n).astype(np.float32)),
            "clip_score": pa.array(rng.random(n).astype(np.float32))}
    for name, col in sims.items():
        t = t.set_column(t.schema.get_field_index(name), name, col)
    return t


def build(cat: Catalog, name: str, rows: int, rng: np.random.Generator) -> list[str]:
    """Commit ``rows`` stub rows as version 1 of ``name``; return 200 of their ids."""
    cat.create(name, "synthetic")
    refs, ids = [], []
    for start in range(0, rows, SHARD_ROWS):
        table = stub_rows(rng, min(SHARD_ROWS, rows - start), start)
        ids += rng.choice(table["sample_id"].to_numpy(zero_copy_only=False), 200 * SHARD_ROWS // max(rows, SHARD_ROWS) + 1).tolist()
        refs.append(cat.write_shard(name, table))
    cat.commit(name, refs, message="benchmark rows")
    return ids


def server_ms(client: TestClient, url: str) -> float:
    r = client.get(url)
    assert r.status_code == 200, (url, r.status_code, r.text[:500])
    return float(r.headers["server-timing"].split("dur=")[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows, medians = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(Path(tmp) / "catalog")
        ids, build_s = {}, {}
        for n in args.sizes:
            t0 = time.perf_counter()
            ids[n] = build(cat, f"rows-{n}", n, rng)
            build_s[n] = round(time.perf_counter() - t0, 1)
        client = TestClient(create_app(UiConfig(catalog=cat.root, cache=Path(tmp) / "ui")))
        pages = {
            "bare baseline (upload form)": ("baseline", lambda n, i: "/audit"),
            "gallery first page": ("gallery", lambda n, i: f"/d/rows-{n}/1"),
            "gallery later page (90%)": ("gallery", lambda n, i: f"/d/rows-{n}/1?after={int(n * 0.9) + i}"),
            "gallery filtered (blocked, by real sim, range)": (
                "gallery", lambda n, i: f"/d/rows-{n}/1?status=blocked_real_copy&sort=real&min_nn_similarity=0.{i % 5}"),
            "sample page": ("sample", lambda n, i: f"/sample/{ids[n][i % len(ids[n])]}"),
        }
        for n in args.sizes:
            first_ms = server_ms(client, f"/d/rows-{n}/1")  # builds the version's gallery index
            rows.append({"rows": n, "page": "first visit (index build)", "kind": "once", "n": 1,
                         "p50_ms": round(first_ms, 1), "p95_ms": round(first_ms, 1), "goal": "-"})
        for label, (kind, url) in pages.items():
            ms = {n: [] for n in args.sizes}
            for n in args.sizes:
                server_ms(client, url(n, 0))  # warm-up
            for i in range(args.repeats):  # sizes interleaved: the shared machine's load falls on both alike
                for n in args.sizes:
                    ms[n].append(server_ms(client, url(n, i + 1)))
            for n in args.sizes:
                p50, p95 = float(np.percentile(ms[n], 50)), float(np.percentile(ms[n], 95))
                medians[(label, n)] = (p50, p95)
                goal = GOAL_MS.get(kind)
                rows.append({"rows": n, "page": label, "kind": kind, "n": len(ms[n]), "p50_ms": round(p50, 2),
                             "p95_ms": round(p95, 2),
                             "goal": f"p95 < {goal:.0f} ms: {'met' if p95 < goal else 'MISSED'}" if goal else "-"})
        rows.sort(key=lambda r: r["rows"])
        small, large = min(args.sizes), max(args.sizes)
        flat = []
        for label, (kind, _) in pages.items():
            (s50, s95), (l50, l95) = medians[(label, small)], medians[(label, large)]
            ratio = l50 / s50 if s50 else float("nan")
            goal = f"<= {FLAT}x: {'met' if ratio <= FLAT else 'MISSED'}" if kind != "baseline" else "- (reads no catalog)"
            flat.append({"page": label, f"p50 {small}": round(s50, 2), f"p50 {large}": round(l50, 2),
                         "ratio_p50": round(ratio, 2), "ratio_p95": round(l95 / s95, 2) if s95 else None, "goal": goal})
    emit("ui_flat", f"synthgen ui: {large} vs {small} rows (median server time ratio)", flat,
         path=str(Path(args.json).with_name(Path(args.json).stem + "_flat.json")) if args.json else None)
    emit("ui", "synthgen ui: server time per page (Server-Timing, in-process)", rows,
         {"build_s": build_s, "repeats": args.repeats, "shard_rows": SHARD_ROWS}, args.json)


if __name__ == "__main__":
    main()
