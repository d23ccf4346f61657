"""Trace an image file back to its catalog row: by pixel hash, else by CLIP embedding re-ranked by pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from catalog.store import Catalog
from catalog.version import DatasetVersion, embeddings_of, open_version


@dataclass
class TraceMatch:
    """A candidate row for an image, and how sure the match is."""

    sample_id: str
    dataset: str
    method: str  # 'watermark' | 'png-metadata' | 'pixel-sha256' | 'clip-embedding' | 'clip+pixels'
    similarity: float = 1.0
    margin: float | None = None  # best minus second-best similarity
    confidence: str = "exact"
    pixel_distance: float | None = None  # to the file, when CLIP candidates were re-ranked by pixels
    same_pixels: list[str] | None = None  # other rows with identical pixels (e.g. a rerun of the seeds)


def searchable(cat: Catalog, allow_restricted: bool) -> list[DatasetVersion]:
    """The heads a trace may match against: restricted datasets only with ``allow_restricted``.

    A trace that named a restricted row (or a blocked copy of one) to a
    caller without the flag would tell them what the restricted set holds;
    without it such rows are not searched at all, so a file copied from
    them is answered exactly as a file the catalog has never seen.
    """
    out = []
    for name in cat.names():
        if cat.head(name) and (allow_restricted or not cat.info(name).get("restricted")):
            out.append(open_version(cat, name, allow_restricted=allow_restricted))
    return out


def by_pixel_hash(cat: Catalog, sha: str, allow_restricted: bool = False) -> list[TraceMatch]:
    """Rows whose decoded pixels hash to ``sha`` (exact copies, any container); see ``searchable``."""
    out = []
    for version in searchable(cat, allow_restricted):
        t = version.table(["sample_id", "image_sha256"], status="all")  # withheld copies left out without the flag
        out += [TraceMatch(sid, version.name, "pixel-sha256")
                for sid, h in zip(t["sample_id"].to_pylist(), t["image_sha256"].to_pylist()) if h == sha]
    return out


RERANK = 16  # CLIP candidates re-ranked by pixels
THUMB = 16  # thumbnail side for the pixel comparison (the memorisation guard's)


def by_embedding(cat: Catalog, query: np.ndarray, model_name: str, image=None,
                 allow_restricted: bool = False) -> TraceMatch | None:
    """Nearest row (any status) over every dataset embedded with ``model_name``.

    With ``image`` (the file's decoded pixels), the ``RERANK`` nearest rows
    by CLIP are re-ranked by the memorisation guard's shift-tolerant pixel
    distance: among many look-alike digits, a re-encoded or resized copy is
    closest in pixels to its source even when CLIP puts a neighbour first.
    """
    cands: list[tuple[float, str, str]] = []
    versions: dict = {}
    for version in searchable(cat, allow_restricted):
        name = version.name
        ids, emb, models = embeddings_of(version, status="all")
        if not ids or models != {model_name}:
            continue
        sims = emb @ query
        top = np.argsort(-sims)[:RERANK]
        cands += [(float(sims[i]), ids[i], name) for i in top]
        versions[name] = version
    if not cands:
        return None
    cands.sort(reverse=True)
    cands = cands[:RERANK]
    if image is None:
        sim, sid, name = cands[0]
        margin = sim - cands[1][0] if len(cands) > 1 else None
        # Calibrated on the embedded CLIP: re-encoded/resized copies stay above 0.9,
        # and a clear gap to the runner-up separates a copy from a look-alike.
        confidence = "high" if sim >= 0.9 and (margin or 1) >= 0.02 else "medium" if sim >= 0.8 else "low"
        return TraceMatch(sid, name, "clip-embedding", sim, margin, confidence)
    dists = _pixel_distances(image, cands, versions)
    order = np.argsort(dists, kind="stable")
    sim, sid, name = cands[order[0]]
    # Rows with the very same pixels are equally the source (same seeds in another job): name them all,
    # and measure the margin to the first row that actually differs.
    twins = [i for i in order[1:] if dists[i] - dists[order[0]] < 1e-6]
    rest = [i for i in order[1:] if i not in twins]
    margin = float(dists[rest[0]] - dists[order[0]]) if rest else None
    # A copy sits well below its runner-up in pixels (copies <= 0.21, distinct digits >= 0.27).
    confidence = "high" if sim >= 0.9 and (margin or 1) >= 0.05 else "medium" if sim >= 0.8 else "low"
    return TraceMatch(sid, name, "clip+pixels", sim, margin, confidence, float(dists[order[0]]),
                      [f"{cands[i][1]} in {cands[i][2]}" for i in twins])


def _pixel_distances(image, cands: list[tuple[float, str, str]], versions: dict) -> np.ndarray:
    from synthgen.imaging import decode
    from synthgen.memorisation import copy_distances, standardise

    images = {(name, sid): data for name in {c[2] for c in cands}
              for sid, data in versions[name].images([c[1] for c in cands if c[2] == name]).items()}
    thumbs = np.stack([standardise(decode(images[(c[2], c[1])]), THUMB) for c in cands])
    return copy_distances(standardise(image, THUMB), thumbs)


def by_watermark(cat: Catalog, image, allow_restricted: bool = False) -> TraceMatch | None:
    """The row whose watermark payload the file carries, decoded at each marked size in the catalog.

    A resized copy is scaled back to the size its row was generated at
    before decoding (the DWT-DCT-SVD watermark is not scale invariant); a
    payload within ``MAX_DISTANCE`` bits of a row's names that row.
    """
    from synthgen.watermark import BITS, MAX_DISTANCE, distance, read

    groups: dict[tuple, list[tuple[str, str, str]]] = {}
    for version in searchable(cat, allow_restricted):
        name = version.name
        t = version.table(  # only the matching sample id leaves
            ["sample_id", "watermark", "watermark_method", "width", "height"], status="all", origin="synthetic")
        for r in t.to_pylist():
            if r["watermark"] and r["watermark_method"]:
                groups.setdefault((r["watermark_method"], r["width"], r["height"]), []).append(
                    (r["watermark"], r["sample_id"], name))
    best: tuple[int, str, str] | None = None
    rgb = image.convert("RGB")
    for (mark, w, h), rows in groups.items():
        method, strength = mark.rsplit(":", 1)
        pixels = np.asarray(rgb if rgb.size == (w, h) else rgb.resize((w, h)))
        got = read(pixels, BITS, method, int(strength))
        if got is None:
            continue
        for payload, sid, name in rows:
            d = distance(payload, got)
            if d <= MAX_DISTANCE and (best is None or d < best[0]):
                best = (d, sid, name)
    if best is None:
        return None
    d, sid, name = best
    return TraceMatch(sid, name, "watermark", 1 - d / BITS, confidence="exact" if d == 0 else "high")
