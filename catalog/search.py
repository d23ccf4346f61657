"""Semantic search over a version: CLIP text embedding -> nearest rows, with an SQL filter."""

from __future__ import annotations

import json

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


def hit_attributes(version: DatasetVersion, hits: list[tuple[str, float]]) -> dict[str, dict[str, str]]:
    """Each hit's prompt-attribute values (``prompt_attributes``), for hits whose row has any."""
    want = {sid for sid, _ in hits}
    rows = version.table(["sample_id", "prompt_attributes"]).to_pylist()
    return {r["sample_id"]: json.loads(r["prompt_attributes"]) for r in rows
            if r["sample_id"] in want and r["prompt_attributes"]}


def by_attribute(hits: list[tuple[str, float]], attributes: dict[str, dict[str, str]]) -> list[tuple[str, str, int, float]]:
    """(attribute, value, hits, mean cosine) over the hits: which attribute values a query finds, and how closely."""
    groups: dict[tuple[str, str], list[float]] = {}
    for sid, sim in hits:
        for name, value in attributes.get(sid, {}).items():
            groups.setdefault((name, value), []).append(sim)
    return [(name, value, len(sims), float(np.mean(sims))) for (name, value), sims in sorted(groups.items())]
