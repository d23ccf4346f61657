"""Index at scale: exact Flat vs IVF vs HNSW for near-duplicate search, one thread.

Synthetic CLIP-like data: unit vectors around ``--clusters`` random centres
(cluster sizes log-normal, spread per cluster so that a point sits at cosine
~0.7-0.9 from its centre and ~0.5-0.8 from its cluster-mates). Queries: a
share ``--planted`` are near-duplicates of random base rows at cosine
U(0.951, 0.99) (built as t*x + sqrt(1-t^2)*u, u orthogonal to x), the rest
are new points drawn like the base.

For each index: build time, time to search all queries (k=1) on ONE thread,
and recall = share of planted pairs (exact best cosine >= 0.95, by exact
search) whose best match found by the index has cosine >= 0.95. The exact
Flat search at full size is timed on the planted queries only (they are the
ground truth anyway) and extrapolated to all queries; its cost does not
depend on the query. HNSW is built on the first ``--hnsw-base`` rows only
(its one-thread build is far too slow for 1M rows); the planted sources are
drawn from those rows so its recall is scored on the same pairs. Base rows
are i.i.d., so that draw is still a uniform draw of base vectors.

Targets: 10,000 queries against 1,000,000 vectors in <= 10 s, recall >= 0.99.

    python bench/bench_index.py [--base 1000000] [--queries 10000] [--dim 512] [--json PATH]
    python bench/bench_index.py --base 200000 --queries 2000   # quick run
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import faiss
import numpy as np

from bench.report import emit
from synthgen.index import THRESHOLD, build_index, describe

TARGET_SECONDS = 10.0  # for 10,000 queries against 1,000,000 vectors
TARGET_RECALL = 0.99
FULL_FLAT_PAIRS = 2e9  # above base*queries pairs, time exact search on the planted subset only


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class Clusters:
    """Generative model of the synthetic embeddings."""

    def __init__(self, rng: np.random.Generator, k: int, dim: int):
        self.dim = dim
        self.centres = unit(rng.standard_normal((k, dim), dtype=np.float32))
        w = rng.lognormal(0.0, 1.0, k)
        self.weights = w / w.sum()
        # noise norm relative to the unit centre: cosine to centre 1/sqrt(1+s^2) ~ 0.71-0.89
        self.spread = rng.uniform(0.5, 1.0, k).astype(np.float32)

    def sample(self, rng: np.random.Generator, n: int, chunk: int = 100_000) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            c = rng.choice(len(self.centres), size=m, p=self.weights)
            x = rng.standard_normal((m, self.dim), dtype=np.float32)
            x *= (self.spread[c] / math.sqrt(self.dim))[:, None]
            x += self.centres[c]
            out[s : s + m] = unit(x)
        return out


def planted(rng: np.random.Generator, base: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Near-duplicates of base[src] at cosine U(0.951, 0.99); returns (queries, target cosines)."""
    x = base[src]
    t = rng.uniform(0.951, 0.99, len(src)).astype(np.float32)
    u = rng.standard_normal(x.shape, dtype=np.float32)
    u -= np.einsum("ij,ij->i", u, x)[:, None] * x
    unit(u)
    q = t[:, None] * x + np.sqrt(1 - t**2)[:, None] * u
    return unit(q), t


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1_000)
    ap.add_argument("--planted", type=float, default=0.3, help="share of queries that are near-duplicates")
    ap.add_argument("--hnsw-base", type=int, default=100_000, help="rows HNSW is built on (0: skip HNSW)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)  # every build and search below runs on one thread
    rng = np.random.default_rng(args.seed)
    t_start = time.perf_counter()

    model = Clusters(rng, args.clusters, args.dim)
    base, gen_s = timed(model.sample, rng, args.base)
    n_plant = round(args.planted * args.queries)
    hnsw_base = min(args.hnsw_base, args.base)
    src = rng.choice(hnsw_base if hnsw_base else args.base, size=n_plant, replace=False)
    dup_q, dup_t = planted(rng, base, src)
    queries = np.concatenate([dup_q, model.sample(rng, args.queries - n_plant)])
    is_dup = np.zeros(args.queries, bool)
    is_dup[:n_plant] = True
    print(f"data: {args.base:,} x {args.dim} base, {args.queries:,} queries ({n_plant:,} planted), {gen_s:.1f}s")

    rows: list[dict] = []
    # Exact ground truth and the Flat row.
    flat, flat_build = timed(build_index, base, exact_limit=args.base, kind="flat")
    full = args.base * args.queries <= FULL_FLAT_PAIRS
    gt_q = queries if full else dup_q
    (gt_sim, _), flat_s = timed(flat.search, gt_q, 1)
    gt_sim = gt_sim[:n_plant, 0]
    positive = gt_sim >= THRESHOLD
    flat_full_s = flat_s * args.queries / len(gt_q)
    rows.append(dict(
        index="Flat (exact)", base=args.base, params="-", build_s=flat_build, search_s=flat_full_s,
        qps=args.queries / flat_full_s, recall=1.0,
        note="measured" if full else f"extrapolated from {len(gt_q):,} queries ({flat_s:.1f}s)",
    ))
    del flat
    print(f"flat: {flat_s:.1f}s for {len(gt_q):,} queries; planted pairs with exact cosine >= {THRESHOLD}: "
          f"{positive.sum():,}/{n_plant:,} (min exact {gt_sim.min():.4f})")

    def score(index) -> tuple[float, float]:
        (sims, _), s = timed(index.search, queries, 1)
        found = sims[:n_plant, 0] >= THRESHOLD
        return s, float(found[positive].mean())

    # IVF: what build_index picks above exact_limit, at the calibrated nprobe and around it.
    ivf, ivf_build = timed(build_index, base, exact_limit=0, seed=args.seed)
    choice = describe(ivf)
    print(f"ivf: built in {ivf_build:.1f}s: {choice}")
    auto = choice.nprobe
    for p in sorted({max(1, auto // 2), auto, min(2 * auto, choice.nlist)}):
        ivf.nprobe = p
        s, r = score(ivf)
        rows.append(dict(
            index="IVFFlat" + (" (auto)" if p == auto else ""), base=args.base,
            params=f"nlist={choice.nlist} nprobe={p} train={choice.train_size:,}", build_s=ivf_build,
            search_s=s, qps=args.queries / s, recall=r,
            note=f"calibrated recall {choice.calibrated_recall:.3f} at cos={THRESHOLD}" if p == auto else "",
        ))
        print(rows[-1])
    ivf_choice = choice.as_dict()
    del ivf

    hnsw_choice = None
    if hnsw_base:
        sub = base[:hnsw_base]
        hnsw, hnsw_build = timed(build_index, sub, kind="hnsw", seed=args.seed)
        hnsw_choice = describe(hnsw)
        auto_ef = hnsw_choice.ef_search
        for ef in sorted({auto_ef, 2 * auto_ef}):
            hnsw.hnsw.efSearch = ef
            s, r = score(hnsw)
            rows.append(dict(
                index="HNSWFlat", base=hnsw_base, params=f"M={hnsw_choice.hnsw_m} efC=40 efSearch={ef}",
                build_s=hnsw_build, search_s=s, qps=args.queries / s, recall=r,
                note=(f"calibrated; build ~{hnsw_build / hnsw_base * 1e6 / 60:.0f} min/1M rows if linear"
                      if ef == auto_ef else ""),
            ))
            print(rows[-1])
        hnsw_choice = hnsw_choice.as_dict()
        del hnsw

    at_scale = args.base >= 1_000_000 and args.queries >= 10_000
    for r in rows:
        ok = r["recall"] >= TARGET_RECALL and r["search_s"] <= TARGET_SECONDS * args.queries / 10_000
        r["meets_targets"] = ("yes" if ok else "no") if r["base"] >= 1_000_000 else ("n/a (small base)" if ok else "no")
    total = time.perf_counter() - t_start
    title = (f"Near-duplicate search, {args.base:,} x {args.dim} base, {args.queries:,} queries "
             f"({n_plant:,} planted at cos 0.951-0.99), k=1, one thread; "
             f"targets: 10k queries vs 1M in <= {TARGET_SECONDS:g} s, recall >= {TARGET_RECALL}"
             + ("" if at_scale else " (not at target scale)"))
    emit("index", title, rows, {
        "targets": {"search_s_10k_queries_1M": TARGET_SECONDS, "recall": TARGET_RECALL, "threshold": THRESHOLD},
        "params": vars(args), "planted_pairs": int(positive.sum()), "planted_min_exact_cos": float(gt_sim.min()),
        "ivf_choice": ivf_choice, "hnsw_choice": hnsw_choice, "threads": 1, "total_s": total,
        "data_s": gen_s,
    }, args.json)
    print(f"total {total:.0f}s")


if __name__ == "__main__":
    main()
