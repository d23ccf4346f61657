"""FAISS index whose type follows the size of the data, like autofaiss.

Small sets get an exact ``IndexFlatIP``: nothing to train, nothing to tune,
and the decisions in ``synthgen.dedup`` are then exactly the thresholds on
true cosine similarity. Beyond ``exact_limit`` vectors an exact scan of every
query against every vector gets too slow, so the set gets an inverted-file
index (``IndexIVFFlat``, inner product): k-means cells over a deterministic
sample, and each query scans only the ``nprobe`` nearest cells.

Dedup only asks one question of the index: "is there a stored vector at
cosine >= threshold?". ``nprobe`` is therefore not a fixed guess but
calibrated on the data being indexed: stored vectors are perturbed to
cosine exactly ``threshold`` (the hardest near-duplicates that still count)
and ``nprobe`` is the smallest number of cells that still holds the source
of ``target_recall`` of them.

The vectors are stored uncompressed (IVF*Flat*, not PQ/SQ), so every
similarity an index returns is the exact cosine of the pair it found: an
approximate index can miss a neighbour, never misreport one.

``kind="hnsw"`` builds an ``IndexHNSWFlat`` instead (bench/bench_index.py
compares it); it is not chosen automatically because its single-threaded
build is far slower than IVF's, its multi-threaded build is not
reproducible, and its graph adds memory on top of the vectors.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass, replace

import faiss
import numpy as np

from synthgen.row_file import RowFile
from synthgen.vector_set import VectorSet

EXACT_INDEX_LIMIT = 100_000
THRESHOLD = 0.95  # lowest dedup threshold in use (spec.dedup.real_threshold default)
TARGET_RECALL = 0.99
# Calibrate to miss at most half the misses the target allows: the estimate
# from 2,000 probes is itself off by ~0.002, and real near-duplicates are not
# perturbed isotropically like the probes are.
CALIBRATION_MARGIN = 0.5
MIN_TRAIN = 50_000
POINTS_PER_CELL = 40  # faiss warns below 39 training points per centroid
CALIBRATION_PROBES = 2_000
# Rows added per call when they come from a file. A multiple of faiss's query block for exact search
# (4,096 rows per BLAS product), so the quantizer assigns every row as in one add: the index is
# byte-identical (tested; and the 200k and 1M guards of bench_scale's files).
ADD_ROWS = 65_536
HNSW_M = 32
_EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)

# What build_index chose, for describe(): faiss objects take no Python
# attributes, and the train size is not recoverable from a trained index.
_CHOICES: "weakref.WeakKeyDictionary[faiss.Index, IndexChoice]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class IndexChoice:
    """What kind of index was built for a set of vectors, and with which parameters.

    ``calibrated_recall`` is the share of calibration near-duplicates (stored
    vectors perturbed to cosine ``threshold``) that the index finds with the
    chosen ``nprobe`` / ``ef_search``; None for exact indexes or when unknown.
    """

    kind: str  # "flat" | "ivf" | "hnsw"
    n: int
    dim: int
    nlist: int | None = None
    nprobe: int | None = None
    train_size: int | None = None
    hnsw_m: int | None = None
    ef_search: int | None = None
    threshold: float | None = None
    calibrated_recall: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def ivf_plan(n: int, nlist: int | None = None) -> tuple[int, int]:
    """(nlist, train_size) for an IVF index over ``n`` vectors.

    nlist ~ 4*sqrt(n), autofaiss' lower end: a query costs nlist*d to rank
    the centroids plus nprobe*(n/nlist)*d to scan its cells, while adding
    costs n*nlist*d and k-means ~ train*nlist*d per iteration, so more cells
    would speed the scan but slow the build (at 1M rows: 4,000 cells, ~3 min
    to build on one core). Capped at n/40 so k-means always has the 39+ points per
    centroid faiss asks for. The training sample is 40 points per centroid,
    at least 50k (capped at n); k-means time grows linearly with it.
    """
    if nlist is None:
        nlist = round(4 * math.sqrt(n))
    nlist = max(1, min(nlist, n // POINTS_PER_CELL))
    train = min(n, max(POINTS_PER_CELL * nlist, MIN_TRAIN))
    return nlist, train


def build_index(
    embeddings: np.ndarray,
    exact_limit: int = EXACT_INDEX_LIMIT,
    nprobe: int | None = None,
    seed: int = 0,
    *,
    kind: str = "auto",
    nlist: int | None = None,
    threshold: float = THRESHOLD,
    target_recall: float = TARGET_RECALL,
    hnsw_m: int = HNSW_M,
    ef_search: int | None = None,
) -> faiss.Index:
    """Index unit-length ``embeddings`` (n, d) for cosine search, type chosen by size.

    ``kind="auto"``: ``IndexFlatIP`` (exact) for n <= ``exact_limit``, else
    ``IndexIVFFlat`` with inner product, nlist/train size from ``ivf_plan``,
    trained by spherical k-means on a sample drawn with ``seed``, and
    ``nprobe`` calibrated so that ``target_recall`` of near-duplicates at
    cosine ``threshold`` are found, with a margin: it aims at missing half as
    many (0.995 for 0.99). Pass ``nprobe`` to fix it instead.
    ``kind`` may force "flat", "ivf" or "hnsw" (``ef_search`` is calibrated
    the same way unless given). The same inputs and seed give the same index.
    Vectors are added in row order, so search result ``i`` is row ``i``.

    ``embeddings`` may be a ``synthgen.row_file.RowFile``: its rows are then read as needed (the
    training sample, then chunk by chunk as added), so memory holds the index and not the rows
    too; the index is the one the same rows in an array give.
    """
    emb = embeddings if isinstance(embeddings, RowFile) else np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {emb.shape}")
    n, d = emb.shape
    if kind == "auto":
        kind = "flat" if n <= exact_limit else "ivf"
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(d)
        if n:
            _add(index, emb)
        _CHOICES[index] = IndexChoice("flat", n, d)
        return index
    if kind == "ivf":
        return _build_ivf(emb, nlist, nprobe, seed, threshold, target_recall)
    if kind == "hnsw":
        return _build_hnsw(emb, hnsw_m, ef_search, seed, threshold, target_recall)
    raise ValueError(f"unknown index kind {kind!r}: expected auto, flat, ivf or hnsw")


def _build_ivf(emb, nlist, nprobe, seed, threshold, target_recall) -> faiss.Index:
    n, d = emb.shape
    nlist, train_size = ivf_plan(n, nlist)
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    # Spherical k-means keeps centroids unit-length: with inner product,
    # longer centroids would otherwise attract queries regardless of angle.
    index.cp.spherical = True
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=train_size, replace=False)) if train_size < n else np.arange(n)
    index.train(np.ascontiguousarray(emb[sample]))
    _add(index, emb)
    recall = None
    if nprobe is None:
        nprobe, recall = calibrate_nprobe(index, emb, threshold, with_margin(target_recall), seed=seed)
    index.nprobe = max(1, min(int(nprobe), nlist))
    _CHOICES[index] = IndexChoice(
        "ivf", n, d, nlist=nlist, nprobe=index.nprobe, train_size=train_size, threshold=threshold,
        calibrated_recall=recall,
    )
    return index


def _add(index: faiss.Index, emb: np.ndarray | RowFile) -> None:
    if isinstance(emb, np.ndarray):
        index.add(emb)
        return
    for start in range(0, len(emb), ADD_ROWS):
        index.add(emb[start : start + ADD_ROWS])


def _build_hnsw(emb, m, ef_search, seed, threshold, target_recall) -> faiss.Index:
    emb = emb[:] if isinstance(emb, RowFile) else emb  # a graph is built from all its rows at once
    n, d = emb.shape
    index = faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    index.add(emb)
    recall = None
    if ef_search is None:
        probes, src = near_duplicate_probes(emb, threshold, CALIBRATION_PROBES, seed)
        ref = np.einsum("ij,ij->i", probes, emb[src])
        for ef_search in _EF_LADDER:
            index.hnsw.efSearch = ef_search
            sims, _ = index.search(probes, 1)
            # found = the source or something at least as close
            recall = float(np.mean(sims[:, 0] >= ref - 1e-5))
            if recall >= with_margin(target_recall):
                break
    index.hnsw.efSearch = int(ef_search)
    _CHOICES[index] = IndexChoice(
        "hnsw", n, d, hnsw_m=m, ef_search=int(ef_search), threshold=threshold, calibrated_recall=recall
    )
    return index


def with_margin(target_recall: float) -> float:
    """The recall to calibrate for: ``target_recall`` with half its allowed misses kept back (``CALIBRATION_MARGIN``)."""
    return 1 - (1 - target_recall) * CALIBRATION_MARGIN


def near_duplicate_probes(
    embeddings: np.ndarray, threshold: float, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` unit vectors at cosine exactly ``threshold`` from random rows, and those rows.

    Each probe is ``t*x + sqrt(1-t^2)*u`` with ``u`` a random unit direction
    orthogonal to the row ``x``: the farthest a near-duplicate can be and
    still count, which is where an approximate index loses it first.
    """
    n = len(embeddings)
    rng = np.random.default_rng([seed, 1])  # independent of the training sample's stream
    src = rng.choice(n, size=min(count, n), replace=False)
    x = embeddings[src].astype(np.float32)
    u = rng.standard_normal(x.shape, dtype=np.float32)
    u -= np.einsum("ij,ij->i", u, x)[:, None] * x
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    q = threshold * x + math.sqrt(1 - threshold**2) * u
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(q, dtype=np.float32), src


def calibrate_nprobe(
    index: faiss.Index,
    embeddings: np.ndarray,
    threshold: float = THRESHOLD,
    target_recall: float = TARGET_RECALL,
    probes: int = CALIBRATION_PROBES,
    seed: int = 0,
) -> tuple[int, float]:
    """Smallest nprobe for which ``target_recall`` of near-duplicate probes reach their source's cell.

    No trial searches: a probe is found for sure when the cell its source was
    added to is among the nprobe cells whose centroids score highest for the
    probe, so the nprobe it needs is that cell's rank + 1. (It may also be
    found through another stored vector at >= threshold, so this is a lower
    bound on recall.) Returns (nprobe, share of probes covered).
    """
    ivf = faiss.extract_index_ivf(index)
    q, src = near_duplicate_probes(embeddings, threshold, probes, seed)
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    _, cell = ivf.quantizer.search(np.ascontiguousarray(embeddings[src], dtype=np.float32), 1)
    need = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), 1024):  # bounded memory: 1024 x nlist scores at a time
        scores = q[s : s + 1024] @ centroids.T
        own = scores[np.arange(len(scores)), cell[s : s + 1024, 0]]
        need[s : s + 1024] = (scores > own[:, None]).sum(axis=1) + 1
    need.sort()
    k = need[max(0, math.ceil(target_recall * len(need)) - 1)]
    nprobe = int(min(k, ivf.nlist))
    return nprobe, float(np.mean(need <= nprobe))


def describe(index: faiss.Index) -> IndexChoice:
    """What ``index`` is: kind, size and search parameters (current values).

    Train size and calibrated recall are known only for indexes made by
    ``build_index``; calibrated recall is dropped once nprobe / efSearch is
    changed from what was calibrated.
    """
    known = _CHOICES.get(index)
    index = faiss.downcast_index(index)
    n, d = int(index.ntotal), int(index.d)
    if isinstance(index, faiss.IndexFlat):
        return replace(known, n=n) if known else IndexChoice("flat", n, d)
    if isinstance(index, faiss.IndexHNSW):
        ef = int(index.hnsw.efSearch)
        base = known or IndexChoice("hnsw", n, d, hnsw_m=int(index.hnsw.nb_neighbors(1)))
        stale = base.ef_search is not None and base.ef_search != ef
        return replace(base, n=n, ef_search=ef, calibrated_recall=None if stale else base.calibrated_recall)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        base = known or IndexChoice("ivf", n, d, nlist=int(ivf.nlist))
        stale = base.nprobe is not None and base.nprobe != ivf.nprobe
        return replace(base, n=n, nprobe=int(ivf.nprobe), calibrated_recall=None if stale else base.calibrated_recall)
    return IndexChoice(type(index).__name__, n, d)


def vector_set(ids, embeddings: np.ndarray, **kw) -> VectorSet:
    """A ``synthgen.dedup.VectorSet`` over ``build_index(embeddings, **kw)``.

    ``ids[i]`` names row ``i``; ``VectorSet.nearest`` then works unchanged,
    since every index built here returns inner products (= cosine).
    """
    ids = list(ids)
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    return VectorSet(ids, build_index(embeddings, **kw))


@dataclass
class SegmentedVectorSet:
    """Several ``VectorSet`` parts searched as one set of their rows concatenated.

    ``nearest`` has ``VectorSet.nearest``'s interface, so ``synthgen.dedup.decide``
    takes either. A query's answer is its best match over all parts; on equal
    similarity the earlier part wins, as the lower row wins within one flat
    index, so parts that are all exact answer exactly as one ``IndexFlatIP``
    over every row would.
    """

    parts: list[VectorSet]

    @property
    def ids(self) -> list[str]:
        """Every row's id, parts in order."""
        return [i for part in self.parts for i in part.ids]

    @property
    def ntotal(self) -> int:
        return sum(int(part.index.ntotal) for part in self.parts)

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Best similarity and id per query over all parts (-inf / None when empty)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        best = np.full(len(queries), -np.inf, dtype=np.float32)
        ids: list[str | None] = [None] * len(queries)
        for part in self.parts:
            sims, got = part.nearest(queries)
            better = sims > best  # strict: ties keep the earlier part's row
            best = np.where(better, sims, best)
            for i in np.flatnonzero(better):
                ids[i] = got[i]
        return best, ids
