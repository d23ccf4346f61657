"""Thumbnails, made once per row and kept under the data folder.

A gallery page shows dozens of rows; decoding and scaling each row's image
on every visit would cost a page what its images weigh. The first request
for a row's thumbnail makes it (PNG, nearest-neighbour upscaling for tiny
images so digits stay crisp, area downscaling for large ones) and writes it
under ``<cache>/thumbs/<dataset>/``; later requests read the file. The
caller checks access before asking: a restricted row's thumbnail is never
made without the flag, and never served from here without it either.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable

from PIL import Image

from catalog.atomic import atomic_write
from synthgen.imaging import decode


def make_thumbnail(data: bytes, side: int) -> bytes:
    """PNG bytes of ``data``'s image fitted in ``side`` x ``side`` pixels."""
    img = decode(data)
    if img.mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGB")
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.NEAREST if scale >= 1 else Image.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class Thumbnails:
    """The thumbnail cache under ``root`` (one file per dataset and sample)."""

    def __init__(self, root: Path, side: int):
        self.root = root
        self.side = side

    def path(self, dataset: str, sample_id: str) -> Path:
        # Hashed: sample ids are any string, file names are not.
        h = hashlib.sha256(sample_id.encode()).hexdigest()
        return self.root / dataset / h[:2] / f"{h}-{self.side}.png"

    def get(self, dataset: str, sample_id: str, image: Callable[[], bytes | None]) -> bytes | None:
        """The row's thumbnail; ``image()`` gives the row's image bytes the first time (None: no such row)."""
        path = self.path(dataset, sample_id)
        if path.is_file():
            return path.read_bytes()
        data = image()
        if data is None:
            return None
        thumb = make_thumbnail(data, self.side)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, thumb)
        return thumb
