"""Trace an image file back to its catalog row: by pixel hash, else by CLIP embedding."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from catalog.store import Catalog
from catalog.version import embeddings_of, open_version


@dataclass
class TraceMatch:
    """A candidate row for an image, and how sure the match is."""

    sample_id: str
    dataset: str
    method: str  # 'png-metadata' | 'pixel-sha256' | 'clip-embedding'
    similarity: float = 1.0
    margin: float | None = None  # best minus second-best similarity
    confidence: str = "exact"


def by_pixel_hash(cat: Catalog, sha: str) -> list[TraceMatch]:
    """Rows whose decoded pixels hash to ``sha`` (exact copies, any container)."""
    out = []
    for name in cat.names():
        head = cat.head(name)
        if not head:
            continue
        files = open_version(cat, name).files
        rows = duckdb.connect().execute(
            "SELECT sample_id FROM read_parquet(?) WHERE image_sha256 = ?", [files, sha]
        ).fetchall()
        out += [TraceMatch(r[0], name, "pixel-sha256") for r in rows]
    return out


def by_embedding(cat: Catalog, query: np.ndarray, model_name: str) -> TraceMatch | None:
    """Nearest row (any status) over every dataset embedded with ``model_name``."""
    best: list[tuple[float, str, str]] = []
    for name in cat.names():
        if not cat.head(name):
            continue
        ids, emb, models = embeddings_of(open_version(cat, name), status="all")
        if not ids or models != {model_name}:
            continue
        sims = emb @ query
        top = np.argsort(-sims)[:2]
        best += [(float(sims[i]), ids[i], name) for i in top]
    if not best:
        return None
    best.sort(reverse=True)
    sim, sid, name = best[0]
    margin = sim - best[1][0] if len(best) > 1 else None
    # Calibrated on the embedded CLIP: re-encoded/resized copies stay above 0.9,
    # and a clear gap to the runner-up separates a copy from a look-alike.
    confidence = "high" if sim >= 0.9 and (margin or 1) >= 0.02 else "medium" if sim >= 0.8 else "low"
    return TraceMatch(sid, name, "clip-embedding", sim, margin, confidence)
