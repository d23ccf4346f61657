"""Semantic search over a version: CLIP text embedding -> nearest rows, with an SQL filter."""

from __future__ import annotations

import numpy as np

from catalog.access import require_access
from catalog.row_filter import select_ids
from catalog.store import CatalogError
from catalog.version import DatasetVersion, embeddings_of


def search(version: DatasetVersion, query: np.ndarray, k: int = 10, where: str | None = None,
           status: str = "kept") -> list[tuple[str, float]]:
    """Top-``k`` (sample id, cosine) for a unit query vector, among rows matching ``where``.

    Search results point at rows, so a restricted version must be opened with ``allow_restricted``.
    """
    require_access(version.catalog.info(version.name), version.allow_restricted, "rows (search results)")
    ids, emb, _ = embeddings_of(version, status)
    if not ids:
        return []
    if emb.shape[1] != query.shape[0]:
        raise CatalogError(f"{version.ref}: embeddings have {emb.shape[1]} dims, the query {query.shape[0]}")
    keep = np.ones(len(ids), bool)
    if where:
        allowed = select_ids(version.all_files, where)
        keep = np.array([i in allowed for i in ids])
    sims = np.where(keep, emb @ query, -np.inf)
    top = [i for i in np.argsort(-sims)[:k] if np.isfinite(sims[i])]
    return [(ids[i], float(sims[i])) for i in top]
