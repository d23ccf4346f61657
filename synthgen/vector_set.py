"""A set of unit-length embeddings with their sample ids, searchable by cosine (the index every decision searches)."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


@dataclass
class VectorSet:
    """Unit-length embeddings with their sample ids, searchable by cosine."""

    ids: list[str]
    index: faiss.Index

    @classmethod
    def build(cls, ids: list[str], embeddings: np.ndarray) -> "VectorSet":
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        index = faiss.IndexFlatIP(emb.shape[1])
        if len(emb):
            index.add(emb)
        return cls(list(ids), index)

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Best similarity and id per query (-inf / None when empty)."""
        if self.index.ntotal == 0:
            return np.full(len(queries), -np.inf, dtype=np.float32), [None] * len(queries)
        sims, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
        # An IVF search whose probed cells are all empty returns id -1 with a huge negative score.
        best = np.where(idx[:, 0] >= 0, sims[:, 0], -np.inf).astype(np.float32)
        return best, [self.ids[i] if i >= 0 else None for i in idx[:, 0]]
