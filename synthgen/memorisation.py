"""Pixel-level confirmation for the memorisation guard (synthetic vs real).

CLIP similarity finds candidate real images; this module confirms a copy in
pixel space, in the spirit of Carlini et al. (2023)'s tiled L2 distance:
both images are converted to grayscale, standardised (zero mean, unit
variance, so a contrast or brightness change does not hide a copy), split
into tiles, and the distance is the *largest* per-tile RMS difference (so a
copy must match everywhere, not on average). Small translations are searched
(by default up to one pixel), because a shifted copy is still a copy.

``copy_distance`` is 0 for identical images and about 1.4 for unrelated ones
(two independent standardised images differ by sqrt(2) RMS).
"""

from __future__ import annotations


import faiss
import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

from synthgen.imaging import to_8bit
from synthgen.index import build_index
from synthgen.preprocess import thumbnails, to_batch
from synthgen.runtime import map_threads


def standardise(img: Image.Image | np.ndarray, size: int | None = None) -> np.ndarray:
    """Grayscale float image with zero mean and unit standard deviation."""
    arr = np.asarray(grey(img, size) if isinstance(img, Image.Image) else img, dtype=np.float32)
    arr = arr - arr.mean()
    return arr / (arr.std() + 1e-6)


def grey(img: Image.Image, size: int | None = None) -> np.ndarray:
    """``img`` in grayscale (uint8), resized (bilinear) to ``size`` x ``size``: what ``standardise`` standardises.

    A 16-bit or float image is scaled to 8 bits first (``synthgen.imaging.to_8bit``): converted directly,
    its pixels would be clipped (all white), and distinct images would give the same thumbnail.
    """
    g = to_8bit(img).convert("L")
    if size and g.size != (size, size):
        g = g.resize((size, size), Image.BILINEAR)
    return np.asarray(g)


def standardise_many(greys: np.ndarray) -> np.ndarray:
    """``standardise`` of each (H, W) image in a stack (n, H, W), bit for bit, in a few array operations."""
    x = np.asarray(greys, dtype=np.float32)
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    return x / (x.std(axis=(-2, -1), keepdims=True) + 1e-6)


def _standardise_batch(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    return x / (x.std(axis=(-2, -1), keepdims=True) + 1e-6)


def _pairwise_copy_distances(a: np.ndarray, b: np.ndarray, max_shift: int = 1, tiles: int = 4) -> np.ndarray:
    """``copy_distance`` for each pair (a[i], b[i]) of two (n, H, W) stacks."""
    n, h, w = b.shape
    best = np.full(n, np.inf, dtype=np.float32)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            hh, ww = h - abs(dy), w - abs(dx)
            th, tw = max(1, hh // tiles), max(1, ww // tiles)
            ny, nx = hh // th, ww // tw
            pa = a[:, max(0, dy) : max(0, dy) + hh, max(0, dx) : max(0, dx) + ww]
            pb = b[:, max(0, -dy) : max(0, -dy) + hh, max(0, -dx) : max(0, -dx) + ww]
            d = _standardise_batch(pa) - _standardise_batch(pb)
            d = d[:, : ny * th, : nx * tw].reshape(n, ny, th, nx, tw)
            best = np.minimum(best, np.sqrt((d * d).mean(axis=(2, 4))).max(axis=(1, 2)))
    return best


def copy_distances(a: np.ndarray, candidates: np.ndarray, max_shift: int = 1, tiles: int = 4) -> np.ndarray:
    """Shift-tolerant tiled distance from one standardised image to each of ``candidates`` (n, H, W).

    For every translation up to ``max_shift`` pixels, the overlapping regions
    are re-standardised (so the crop does not change the scale), split into a
    ``tiles`` x ``tiles`` grid, and the largest per-tile RMS difference is
    taken; the best translation wins. Lower = more alike.
    """
    c = np.asarray(candidates, dtype=np.float32).reshape(-1, *a.shape)
    return _pairwise_copy_distances(np.broadcast_to(a, c.shape), c, max_shift, tiles)


def copy_distance(a: np.ndarray, b: np.ndarray, max_shift: int = 1, tiles: int = 4) -> float:
    """``copy_distances`` for one pair."""
    return float(copy_distances(a, b[None], max_shift, tiles)[0])


THUMB = 16  # guard resolution: small enough to be fast, large enough for digits and thumbnails
_POOL = 2  # candidate descriptors average 2x2 blocks of the thumbnail
DESCRIPTOR_DIM = (THUMB // _POOL) ** 2  # the width of a ``descriptors`` row
_MIN_QUERIES_PER_THREAD = 64  # below this a thread costs more than it saves


class PixelGuard:
    """Finds, for each synthetic image, the closest real image in pixel space.

    Candidates come from a FAISS index over the real images' ``descriptors``
    (8x8 block means of the standardised thumbnails, unit length: a quarter
    of the thumbnail's dimensions, so a quarter of the cost per search),
    queried in one call for a whole batch with each synthetic thumbnail *and*
    its one-pixel shifts (so a shifted copy still finds its source: rolling
    the query is rolling the real image the other way). Of the ``k`` best
    distinct real images over all shifts, only those whose descriptor
    cosine reaches ``THUMB_INDEX_THRESHOLD`` (copies score >= 0.993), the
    best one (the evidence) and any extra candidate the caller passes (e.g.
    the CLIP nearest real sample) are scored exactly with
    ``copy_distance``. The index type follows the size of the real set
    (``synthgen.index.build_index``: exact up to 20k thumbnails, IVF
    beyond), so a million real images cost a few cells per query, not a scan.
    """

    def __init__(self, ids: list[str], images: list[Image.Image], max_shift: int = 1, k: int = 8):
        thumbs = np.stack([standardise(im, THUMB) for im in images]) if images else np.zeros((0, THUMB, THUMB))
        self._setup(ids, thumbs.astype(np.float32), None, max_shift, k)

    @classmethod
    def from_thumbs(cls, ids: list[str], thumbs: np.ndarray, index=None, max_shift: int = 1, k: int = 8) -> "PixelGuard":
        """A guard over stored standardised thumbnails (n, THUMB, THUMB) and, if given, their stored index."""
        guard = cls.__new__(cls)
        guard._setup(ids, thumbs, index, max_shift, k)
        return guard

    def _setup(self, ids, thumbs, index, max_shift, k) -> None:
        self.ids, self.max_shift, self.k, self.thumbs = list(ids), max_shift, k, thumbs
        if len(self.ids) != len(thumbs):
            raise ValueError(f"{len(self.ids)} ids for {len(thumbs)} thumbnails")
        self.index = index if index is not None else build_thumb_index(thumbs)
        self._pos = {sid: i for i, sid in enumerate(self.ids)}

    def nearest(self, images: list[Image.Image], extra: list[str | None] | None = None) -> tuple[list[float | None], list[str | None]]:
        """(distance, real id) of the closest real image for each image; None when no real images."""
        if not len(self.thumbs):
            return [None] * len(images), [None] * len(images)
        return self._nearest(np.stack([standardise(im, THUMB) for im in images]), extra)

    def nearest_pixels(self, arrays: list[np.ndarray], device: str = "cpu",
                       extra: list[str | None] | None = None) -> tuple[list[float | None], list[str | None]]:
        """``nearest`` for same-sized uint8 HWC arrays, thumbnails made on ``device``.

        On an accelerator the whole batch's thumbnails are tensor ops there
        (within one grey level of PIL's, tested); on the CPU Pillow's
        fixed-point resampling is the faster way (measured: 1.5 vs 29 ms per
        1024-px image), so the CPU keeps it.
        """
        if not len(self.thumbs):
            return [None] * len(arrays), [None] * len(arrays)
        if device == "cpu":
            return self.nearest([Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arrays], extra)
        return self._nearest(np.stack([standardise(t) for t in thumbnails(to_batch(arrays, device), THUMB)]), extra)

    def _nearest(self, q: np.ndarray, extra: list[str | None] | None) -> tuple[list[float | None], list[str | None]]:
        """Candidates for standardised query thumbnails ``q`` (n, THUMB, THUMB), then exact scores."""
        n = len(q)
        shifts = range(-self.max_shift, self.max_shift + 1)
        variants = np.stack([np.roll(q, (-dy, -dx), axis=(1, 2)) for dy in shifts for dx in shifts], axis=1)
        sims, idx = _search(self.index, descriptors(variants.reshape(-1, THUMB, THUMB)), self.k)
        sims, idx = sims.reshape(n, -1), idx.reshape(n, -1)  # (n, shifts * k)
        order = np.argsort(np.where(idx >= 0, -sims, np.inf), axis=1, kind="stable")
        idx, sims = np.take_along_axis(idx, order, axis=1), np.take_along_axis(sims, order, axis=1)
        seen = np.tril(idx[:, :, None] == idx[:, None, :], -1).any(axis=2)  # found again through another shift
        distinct = (idx >= 0) & ~seen
        rank = np.cumsum(distinct, axis=1) - 1
        score = distinct & (rank < self.k) & ((sims >= THUMB_INDEX_THRESHOLD) | (rank == 0))
        # (query, candidate) pairs in candidate order, the caller's extra candidate last.
        pq, slot = np.nonzero(score)
        pc = idx[pq, slot]
        extra_pos = np.array([self._pos.get(e, -1) if e else -1 for e in (extra or [None] * n)], dtype=np.int64)
        eq = np.flatnonzero(extra_pos >= 0)
        pq, slot, pc = np.r_[pq, eq], np.r_[slot, np.full(len(eq), idx.shape[1])], np.r_[pc, extra_pos[eq]]
        # One vectorised pass over every pair instead of a Python loop: this runs in the engine's
        # background thread, where Python time would hold the GIL.
        d = _pairwise_copy_distances(q[pq], np.asarray(self.thumbs[pc], dtype=np.float32), self.max_shift)
        best = np.lexsort((slot, d, pq))  # per query: lowest distance, ties to the earlier candidate
        first = best[np.r_[True, pq[best][1:] != pq[best][:-1]]] if len(best) else best
        dists: list[float | None] = [None] * n
        ids: list[str | None] = [None] * n
        for i, j in zip(pq[first].tolist(), first.tolist()):
            dists[i], ids[i] = float(d[j]), self.ids[int(pc[j])]
        return dists, ids


def _search(index, queries: np.ndarray, k: int):
    """``index.search`` in one call per thread (the calling thread's OpenMP count), BLAS single-threaded inside."""
    threads = min(faiss.omp_get_max_threads(), max(1, len(queries) // _MIN_QUERIES_PER_THREAD))
    step = -(-len(queries) // threads)
    with threadpool_limits(1, user_api="blas"):
        parts = map_threads(lambda s: index.search(queries[s : s + step], k), range(0, len(queries), step), threads)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def descriptors(thumbs: np.ndarray) -> np.ndarray:
    """Candidate-index rows of standardised thumbnails (..., THUMB, THUMB): 8x8 block means, centred, unit length.

    On the query at the right shift a copy's source scores >= 0.993
    (measured on smooth images, Gaussian blobs and digits, 0.8 contrast and
    noise), above every other image, as on full thumbnails, at a quarter of
    the dimensions.
    """
    t = np.asarray(thumbs, dtype=np.float32).reshape(-1, THUMB, THUMB)
    s = THUMB // _POOL
    x = t.reshape(-1, s, _POOL, s, _POOL).mean(axis=(2, 4)).reshape(-1, s * s)
    return _unit_rows(x - x.mean(axis=1, keepdims=True))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12))


# Candidates only need to reach the copies: a copy at distance <= 0.24 has global RMS <= 0.24 over
# standardised thumbnails, i.e. cosine >= 0.97, and its descriptor scores >= 0.993 (measured, copies
# up to distance 0.33): the IVF is calibrated to find 0.995 of rows at descriptor cosine 0.97 (at
# 300k: 5 cells per query instead of 8 at 0.95, copies found alike), and candidates below 0.9 are
# not scored (bar each query's best, the evidence).
THUMB_INDEX_THRESHOLD = 0.9
THUMB_CALIBRATION = 0.97
THUMB_EXACT_LIMIT = 20_000
DESCRIPTOR = "pool2-centred-unit"  # stored with the index: an index of other rows is rebuilt


def build_thumb_index(thumbs: np.ndarray, **kw):
    """The candidate index over ``descriptors`` of standardised thumbnails (n, THUMB, THUMB): exact or IVF by size.

    ``kw`` go to ``synthgen.index.build_index`` (e.g. ``kind="ivf"``).
    """
    return build_descriptor_index(descriptors(thumbs), **kw)


def build_descriptor_index(descs: np.ndarray, **kw):
    """``build_thumb_index`` from the thumbnails' ``descriptors`` (n, 64), e.g. computed part by part."""
    # Exact only up to 20k: nine shifted queries per image make a flat scan cost 9 x n x 64 each.
    # IVF cells as ivf_plan (4 sqrt(n)): on 64-d descriptors k-means stays well under a minute at 1M,
    # and smaller cells mean fewer rows scanned per query (measured at 300k: 0.55 vs 1.0 ms per image
    # for 2,190 vs 548 cells, one thread).
    kw = {"exact_limit": THUMB_EXACT_LIMIT, "threshold": THUMB_CALIBRATION, **kw}
    return build_index(descs, **kw)
