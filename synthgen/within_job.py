"""The run's own set in the near-duplicate pass: who is kept, and each sample's nearest earlier kept one.

The rule is sequential (a sample is a duplicate when it reaches the
threshold to a sample kept *earlier* in visit order), but the expensive
part is not: every pair at cosine >= threshold can be found up front, since
all of a job's embeddings are known when it is decided. So:

1. cells: one cell of every position when the job is small (exact), else
   the cells of a spherical k-means trained on the job's own embeddings
   (IVF: each vector lives in its nearest cell and is compared with the
   queries that probe that cell, nprobe calibrated for the recall target);
2. per cell, blocks of queries (in position order) are multiplied with the
   members *earlier* than them (BLAS, not a per-query scan): each block's
   row maxima give the nearest earlier eligible sample, and only rows whose
   maximum reaches the threshold are searched for their candidate pairs;
3. one pass over the queries that have candidates, in visit order,
   resolves the plan-order rule; nothing else is per sample;
4. the queries whose nearest earlier eligible sample was dropped are
   scanned again against kept members only, which gives each sample's
   nearest earlier kept sample (the evidence), ties to the earliest, as an
   exact scan in visit order would.

Positions here are visit-order positions (row ``i`` of ``emb`` is visited
``i``-th); the caller maps them back to samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from synthgen.index import CALIBRATION_PROBES, calibrate_nprobe, near_duplicate_probes, with_margin
from synthgen.runtime import map_threads

EXACT_SCAN_LIMIT = 20_000  # beyond this an all-pairs scan costs more than training cells (measured: 6 s exact vs 2.3 s IVF at 20k x 512)
_BLOCK = 256  # queries per product: small enough that skipping later members halves the flops, large enough for BLAS
_NITER = 10  # k-means iterations: cells only route queries, they need not converge
_POINTS_PER_CELL = 40  # faiss asks for 39+ training points per centroid
_EXACT_QUERIES = 4096  # queries per work item of the exact scan (each meets every earlier sample)
_ROUTE_ROWS = 16_384  # rows per work item when routing vectors to their cells


@dataclass
class RunResult:
    """Outcome over visit-order positions: kept mask, nearest earlier kept (sim, position; -inf / -1 if none)."""

    kept: np.ndarray
    best_sim: np.ndarray
    best_pos: np.ndarray
    kind: str = "exact"
    nlist: int = 1
    nprobe: int = 1
    probes: float = 1.0  # mean cells probed per query (at most nprobe)
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went: cells, pairs, rule, evidence


def float32_floor(threshold: float) -> np.float32:
    """The smallest float32 >= ``threshold``: ``s >= it`` for float32 ``s`` is ``s >= threshold`` exactly."""
    t = np.float32(threshold)
    return np.nextafter(t, np.float32(np.inf)) if float(t) < threshold else t


def _cells_ivf(emb: np.ndarray, threshold: float, target_recall: float, seed: int, threads: int):
    """Cells of a spherical k-means over the job's embeddings, the calibrated nprobe and margin.

    Each vector probes at most ``nprobe`` cells, and only those scoring within
    ``margin`` of its best one: most near-duplicates sit in the best cell of
    both members (measured at 1M x 512: a margin of 0.0002 keeps 0.995 of the
    calibration pairs, and a query then probes 1.0005 cells instead of 2).
    """

    n, d = emb.shape
    nlist = max(1, min(round(math.sqrt(n)), n // _POINTS_PER_CELL))  # train, route and scan all cost ~n*sqrt(n)*d
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.spherical, ivf.cp.seed, ivf.cp.niter = True, seed, _NITER
    train = min(n, _POINTS_PER_CELL * nlist)
    rng = np.random.default_rng(seed)
    ivf.train(emb[np.sort(rng.choice(n, size=train, replace=False))] if train < n else emb)
    target = with_margin(target_recall)
    nprobe, _ = calibrate_nprobe(ivf, emb, threshold, target, seed=seed)
    nprobe = max(1, min(nprobe, nlist))
    margin = _margin(quantizer, emb, threshold, target, nprobe, seed)
    parts = map_threads(lambda s: quantizer.search(emb[s : s + _ROUTE_ROWS], nprobe), range(0, n, _ROUTE_ROWS), threads)
    sims, probes = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    probes[sims < sims[:, :1] - margin] = -1
    del sims
    home = probes[:, 0]  # a vector lives in its nearest cell
    members = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    flat_cell = probes.ravel()
    flat_query = np.repeat(np.arange(n), nprobe)
    keep = flat_cell >= 0
    flat_cell, flat_query = flat_cell[keep], flat_query[keep]
    order = np.argsort(flat_cell, kind="stable")
    q_sorted, c_sorted = flat_query[order], flat_cell[order]
    q_bounds = np.searchsorted(c_sorted, np.arange(nlist + 1))
    cells = [
        (members[m_bounds[c] : m_bounds[c + 1]], q_sorted[q_bounds[c] : q_bounds[c + 1]]) for c in range(nlist)
    ]
    return cells, nlist, nprobe, len(flat_cell) / n


def _margin(quantizer, emb: np.ndarray, threshold: float, target: float, nprobe: int, seed: int) -> float:
    """How far below a vector's best cell a probed cell may score: the smallest margin that, with at most
    ``nprobe`` cells, still takes ``target`` of the calibration near-duplicates (``calibrate_nprobe``'s
    probes, at cosine exactly ``threshold``) to their source's cell."""

    q, src = near_duplicate_probes(emb, threshold, CALIBRATION_PROBES, seed)
    _, own = quantizer.search(np.ascontiguousarray(emb[src]), 1)
    sims, cells = quantizer.search(q, nprobe)
    gap = np.where(cells == own, sims[:, :1] - sims, np.inf).min(axis=1)  # inf: not among the nprobe best
    return float(np.sort(gap)[max(0, math.ceil(target * len(gap)) - 1)])


def resolve(
    emb: np.ndarray,
    eligible: np.ndarray,
    threshold: float,
    exact_limit: int = EXACT_SCAN_LIMIT,
    target_recall: float = 0.99,
    seed: int = 0,
    threads: int | None = None,
) -> RunResult:
    """Decide the run's own set over unit ``emb`` (n, d) in visit order.

    ``eligible[i]``: position ``i`` may be kept (no rule decided it and no
    earlier version holds a duplicate). A sample is kept when eligible and
    no kept sample at a lower position reaches ``threshold``. Exact for
    n <= ``exact_limit``; above, pairs are found through IVF cells with
    ``target_recall`` of pairs at exactly ``threshold`` (closer pairs more).
    ``threads`` (default: FAISS's OpenMP thread count, which
    ``synthgen.runtime.set_threads`` sets) share the cells; the result does
    not depend on it.
    """
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = len(emb)
    eligible = np.asarray(eligible, dtype=bool)
    threads = threads or faiss.omp_get_max_threads()
    with threadpool_limits(1, user_api="blas"):  # parallel over work items, not inside each product
        return _resolve(emb, eligible, threshold, exact_limit, target_recall, seed, threads)


def _resolve(emb, eligible, threshold, exact_limit, target_recall, seed, threads) -> RunResult:
    n = len(emb)
    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        seconds[name] = clock[-1] - clock[-2]

    if n <= exact_limit:  # every position is a member; queries split in blocks to share the work
        everyone = np.arange(n)
        cells = [(everyone, everyone[s : s + _EXACT_QUERIES]) for s in range(0, n, _EXACT_QUERIES)]
        kind, nlist, nprobe, probes = "exact", 1, 1, 1.0
    else:
        (cells, nlist, nprobe, probes), kind = _cells_ivf(emb, threshold, target_recall, seed, threads), "ivf"
    lap("cells")
    thr = float32_floor(threshold)
    best_sim, best_pos = _empty_best(n)
    pair_q, pair_m = [], []
    scans = map_threads(lambda c: _scan(emb, c[0][eligible[c[0]]], c[1], thr, eligible), cells, threads)
    for queries, sim, pos, pq, pm in scans:
        _merge_best(sim, pos, queries, best_sim, best_pos)
        pair_q.append(pq)
        pair_m.append(pm)
    del scans
    lap("pairs")
    kept = eligible.copy()
    q, m = (np.concatenate(pair_q), np.concatenate(pair_m)) if pair_q else ((), ())
    if len(q):
        order = np.lexsort((m, q))
        q, m = q[order], m[order]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        ends = np.r_[starts[1:], len(q)]
        # The one sequential step: a query's partners are all earlier, so visiting queries in
        # increasing position sees every partner's final status.
        for s, e in zip(starts.tolist(), ends.tolist()):
            kept[q[s]] = not kept[m[s:e]].any()
    lap("rule")
    # The nearest earlier eligible sample is the nearest earlier kept one unless it was dropped:
    # only those queries (near a duplicate) are searched again, against kept members alone.
    again = (best_pos >= 0) & ~kept[np.maximum(best_pos, 0)]
    if again.any():
        best_sim[again], best_pos[again] = -np.inf, -1
        for queries, sim, pos, _, _ in map_threads(lambda c: _scan(emb, c[0][kept[c[0]]], c[1][again[c[1]]]), cells, threads):
            _merge_best(sim, pos, queries, best_sim, best_pos)
    lap("evidence")
    return RunResult(kept, best_sim, best_pos, kind, nlist, nprobe, probes, seconds)


def _empty_best(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, -np.inf, dtype=np.float32), np.full(n, -1, dtype=np.int64)


def _scan(emb, members, queries, thr=None, eligible=None):
    """Each query's nearest earlier member, and the (query, member) pairs at >= ``thr``.

    ``members`` and ``queries`` are ascending positions. Queries go in blocks
    of ``_BLOCK``, each multiplied only with the members before its last
    query (on average half of them: later members could never count), and
    only the members inside the block's own position range need a mask.
    Pairs are collected when ``thr`` is given, for ``eligible`` queries, and
    searched only in rows whose best reaches ``thr``. Returns (queries with
    an earlier member, their best similarity, its position, pair queries,
    pair members).
    """
    none = np.zeros(0, np.int64)
    out_q, out_s, out_p, pair_q, pair_m = [none], [np.zeros(0, np.float32)], [none], [none], [none]
    if len(queries):
        members = members[: np.searchsorted(members, queries[-1])]  # members after every query never count
    if not len(members) or not len(queries):
        return none, out_s[0], none, none, none
    em = emb[members]
    for s in range(0, len(queries), _BLOCK):
        q = queries[s : s + _BLOCK]
        lim = int(np.searchsorted(members, q[-1]))  # members[:lim] are earlier than the block's last query
        if lim == 0:
            continue
        g = emb[q] @ em[:lim].T
        first = int(np.searchsorted(members, q[0]))  # members[:first] are earlier than every query here
        if first < lim:
            g[:, first:lim][members[None, first:lim] >= q[:, None]] = -np.inf
        j = np.argmax(g, axis=1)  # first maximum: the earliest member, members being in position order
        sim = g[np.arange(len(q)), j]
        ok = np.isfinite(sim)
        out_q.append(q[ok])
        out_s.append(sim[ok])
        out_p.append(members[j[ok]])
        if thr is not None:
            hit = np.flatnonzero((sim >= thr) & eligible[q])
            if len(hit):
                qi, mi = np.nonzero(g[hit] >= thr)
                pair_q.append(q[hit[qi]])
                pair_m.append(members[mi])
    return tuple(np.concatenate(x) for x in (out_q, out_s, out_p, pair_q, pair_m))


def _merge_best(s, p, queries, best_sim, best_pos) -> None:
    """Fold each query's best (similarity ``s``, position ``p``) into (best_sim, best_pos); ties go to the earlier."""
    cur_s, cur_p = best_sim[queries], best_pos[queries]
    better = (s > cur_s) | ((s == cur_s) & (p < cur_p))
    best_sim[queries[better]], best_pos[queries[better]] = s[better], p[better]
