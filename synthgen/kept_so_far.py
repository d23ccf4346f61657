"""The kept samples of a job's shards decided so far: the run's earlier set for its next shard.

``NearDuplicatePass(before=...)`` asks it for each new sample's nearest kept
sample of the earlier shards. Up to ``EXACT_SCAN_LIMIT`` rows the answer is an
exact scan computed as ``synthgen.within_job`` computes a whole job's pairs
(float32 matrix products, the first maximum wins), so a job decided shard by
shard gets the similarities and ties of one pass over the whole job.
Beyond, full blocks of ``EXACT_SCAN_LIMIT`` rows are frozen into size-aware FAISS
segments (``synthgen.index.build_index``), merged ``MERGE`` at a time as
they grow (size-tiered, like the catalog's version indexes), so a query
scans at most ``EXACT_SCAN_LIMIT`` rows exhaustively plus O(log n) segments.
"""

from __future__ import annotations

import numpy as np

from synthgen.vector_set import VectorSet
from synthgen.index import build_index
from synthgen.within_job import EXACT_SCAN_LIMIT

MERGE = 4  # frozen segments of one size merge this many at a time
_BLOCK = 4096  # rows per product, as in synthgen.within_job


class KeptSoFar:
    """Kept (id, unit embedding) rows of this run in plan order; ``nearest`` like ``VectorSet.nearest``."""

    def __init__(self, exact_limit: int = EXACT_SCAN_LIMIT):
        self.exact_limit = exact_limit
        self.frozen: list[tuple[VectorSet, np.ndarray]] = []  # (segment, its rows' embeddings for merging)
        self.tail_ids: list[str] = []
        self.tail: list[np.ndarray] = []
        self.tail_rows = 0

    @property
    def ntotal(self) -> int:
        return sum(len(s.ids) for s, _ in self.frozen) + self.tail_rows

    def add(self, ids: list[str], embeddings: np.ndarray) -> None:
        """Append kept rows (they come after every row added before, in plan order)."""
        if not len(ids):
            return
        self.tail_ids += list(ids)
        self.tail.append(np.ascontiguousarray(embeddings, dtype=np.float32))
        self.tail_rows += len(ids)
        if self.tail_rows > self.exact_limit:
            emb = np.concatenate(self.tail)
            self.frozen.append((VectorSet(self.tail_ids, build_index(emb, exact_limit=0)), emb))
            self.tail_ids, self.tail, self.tail_rows = [], [], 0
            self._merge()

    def _merge(self) -> None:
        """Merge the newest ``MERGE`` frozen segments while they are of one size level."""
        while len(self.frozen) >= MERGE:
            last = self.frozen[-MERGE:]
            sizes = [len(s.ids) for s, _ in last]
            if max(sizes) > 2 * min(sizes):
                return
            emb = np.concatenate([e for _, e in last])
            ids = [i for s, _ in last for i in s.ids]
            self.frozen[-MERGE:] = [(VectorSet(ids, build_index(emb, exact_limit=0)), emb)]

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Best similarity and id per query over every row (-inf / None when empty); ties: the earlier row."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        best = np.full(len(q), -np.inf, dtype=np.float32)
        ids: list[str | None] = [None] * len(q)
        answers = [s.nearest(q) for s, _ in self.frozen] + ([self._exact(q)] if self.tail_rows else [])
        for sims, got in answers:  # parts in row order
            better = sims > best  # strict: ties keep the earlier part's row
            best = np.where(better, sims, best)
            for i in np.flatnonzero(better):
                ids[i] = got[i]
        return best, ids

    def _exact(self, q: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Exact scan of the tail by matrix products, first maximum per query."""
        emb = np.concatenate(self.tail) if len(self.tail) > 1 else self.tail[0]
        self.tail = [emb]  # concatenated once, reused by later queries
        best = np.full(len(q), -np.inf, dtype=np.float32)
        pos = np.full(len(q), -1, dtype=np.int64)
        for start in range(0, len(emb), _BLOCK):
            g = q @ emb[start : start + _BLOCK].T
            j = np.argmax(g, axis=1)
            s = g[np.arange(len(q)), j]
            better = s > best
            best[better], pos[better] = s[better], start + j[better]
        return best, [self.tail_ids[p] if p >= 0 else None for p in pos]
