"""Ingest's per-file work, run on worker threads: read, decode, hash, thumbnail, and shrink for the embedder.

Threads, not processes: Pillow releases the GIL while it decodes and resizes, hashlib while it hashes
and numpy in the thumbnail's arithmetic, so the files are decoded on every core without copying
bytes between processes. What stays in the GIL per file is a few Python calls.

Memory stays flat whatever the images' size: each worker holds a file's decoded pixels only under a
``PixelBudget`` share, and hands back its bytes, a 16x16 thumbnail and an image for the embedder whose
shorter side is at most ``EMBED_SIDE`` (CLIP-style models resize to 224-448 px anyway).
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

import numpy as np
from PIL import Image

from catalog.ingest_source import Source, SourceFile
from synthgen.imaging import ImageReadError, naming, open_image, orientation, pixel_sha256, to_8bit, upright
from synthgen.memorisation import THUMB, grey

EMBED_SIDE = 512  # the embedder's copy of a larger image is resized so its shorter side is this
PIXEL_BUDGET = 384 << 20  # bytes of decoded pixels in flight across workers (an image larger runs alone)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class EmbedSteps:
    """An embedder split in two: ``prepare`` one image on the decode threads, ``run`` a batch on its device.

    ``Embedder.prepare_image`` / ``embed_prepared`` give the same embeddings as ``embed_images``;
    a plain function of a list of images is ``EmbedSteps.of(fn)`` (all its work on the batch).
    """

    prepare: Callable[[Image.Image], Any]
    run: Callable[[list], np.ndarray]

    @classmethod
    def of(cls, embed: Callable[[list[Image.Image]], np.ndarray]) -> "EmbedSteps":
        return cls(lambda img: img, embed)


def nbytes(item: Any) -> int:
    """Memory held by a prepared item (an image or an array)."""
    if isinstance(item, Image.Image):
        return item.width * item.height * len(item.getbands())
    return int(getattr(item, "nbytes", 0))


@dataclass
class Decoded:
    """One file's result: its bytes and what was measured, or why it is not a readable image."""

    file: SourceFile
    data: bytes | None = None
    error: str | None = None  # "<where>: <why>" for a bad file
    sha256: str = ""
    width: int = 0
    height: int = 0
    thumb: np.ndarray | None = None  # (THUMB, THUMB) uint8 grey: the pixel guard's thumbnail before it is standardised
    for_embedder: Any = None  # ``EmbedSteps.prepare`` of the image (shorter side at most EMBED_SIDE)


class PixelBudget:
    """Bytes of decoded pixels the workers may hold at once; a share larger than the whole waits to run alone."""

    def __init__(self, limit: int = PIXEL_BUDGET):
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        with self._cond:
            while self.used and self.used + n > self.limit:
                self._cond.wait()
            self.used += n
        try:
            yield
        finally:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


def decode_file(source: Source, f: SourceFile, budget: PixelBudget, embed: EmbedSteps | None) -> Decoded:
    """Read and decode one file; a bad file comes back with ``error`` set, never as an exception."""
    where = source.where(f)
    try:
        data = source.read(f)
        with naming(where):
            img = open_image(data)  # the header only: the pixel limit is checked before decoding
            # Decoded bytes plus the conversions below (grey for the thumbnail, RGB for the embedder), and a
            # turned copy beside the stored pixels while an EXIF orientation is applied.
            bands = len(img.getbands())  # a garbled mode fails here: a bad file
            need = img.width * img.height * (bands + 4 + (bands if orientation(img) != 1 else 0))
        with budget.hold(need):
            with naming(where):  # everything Pillow does with the file's pixels
                img.load()
                img = upright(img)  # what a person sees: the embedding, thumbnail and hash are of that
                out = Decoded(f, data, None, pixel_sha256(img), img.width, img.height, grey(img, THUMB))
                copy = embedder_copy(img) if embed is not None else None
            if embed is not None:  # the embedder's own code, outside: a failure there is not the file's
                out.for_embedder = embed.prepare(copy)
            return out
    except ImageReadError as exc:
        return Decoded(f, error=str(exc))


def embedder_copy(img: Image.Image) -> Image.Image:
    """``img`` as RGB, resized (bicubic, as CLIP's processor) so its shorter side is at most ``EMBED_SIDE``.

    A 16-bit or float image is scaled to 8 bits first (``synthgen.imaging.to_8bit``), as for its thumbnail.
    """
    img = to_8bit(img)
    short = min(img.size)
    if short > EMBED_SIDE:
        scale = EMBED_SIDE / short
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
    return img if img.mode == "RGB" else img.convert("RGB")


def ordered_map(pool: Executor | None, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """``fn`` over ``items`` on ``pool``, results in order, at most ``window`` submitted and not yet taken.

    ``Executor.map`` submits every item at once and keeps every result until it is read: a million
    decoded files. Without a pool, runs inline.
    """
    if pool is None:
        yield from map(fn, items)
        return
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:  # stopped early (an error, a kill of the consumer): drop what was queued
            fut.cancel()
