"""Image conversions, hashing, PNG provenance chunks and sample grids."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image, PngImagePlugin

PNG_TEXT_PREFIX = "synthgen:"


DEFAULT_PNG_LEVEL = 1  # zlib level: ~half of level 6's time at 512 px for ~10% more bytes (bench/bench_png.py)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """uint8 as is; float in [0, 1] rounded like diffusers' ``numpy_to_pil``."""
    return arr if arr.dtype == np.uint8 else (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """HWC uint8, or float in [0, 1] (rounded like diffusers' ``numpy_to_pil``) -> PIL."""
    u8 = to_uint8(arr)
    if u8.ndim == 3 and u8.shape[-1] == 1:
        return Image.fromarray(u8[..., 0], mode="L")
    return Image.fromarray(u8)


def encode_png(img: Image.Image, text: Mapping[str, str] | None = None, level: int = 6) -> bytes:
    """PNG bytes at zlib ``level``; deterministic for the same pixels. ``text`` adds tEXt chunks."""
    buf = io.BytesIO()
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(PNG_TEXT_PREFIX + key, str(value))
    img.save(buf, format="PNG", pnginfo=info, compress_level=level)
    return buf.getvalue()


def pixel_sha256(img: Image.Image) -> str:
    """sha256 of the decoded pixels (mode, size, raw bytes).

    Hashing pixels rather than file bytes means the hash survives PNG
    metadata and lossless re-encoding, so an exported file with provenance
    chunks still matches its catalog row.
    """
    h = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def decode(data: bytes) -> Image.Image:
    """PIL image from encoded bytes (fully loaded)."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


class ImageReadError(ValueError):
    """A file that cannot be decoded as an image; the message names the file and why."""


def read_image_file(path: Path) -> tuple[bytes, Image.Image]:
    """A file's bytes and its fully decoded image; ``ImageReadError`` naming the file if it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        return data, decode(data)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # PIL names a BytesIO, not the file, and says "cannot identify image file" for any non-image.
        reason = "not an image PIL can decode" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise ImageReadError(f"{path}: {reason}") from None


def png_text(img: Image.Image) -> dict[str, str]:
    """The synthgen provenance chunks of a PNG, without the prefix."""
    text = getattr(img, "text", {}) or {}
    return {k[len(PNG_TEXT_PREFIX):]: v for k, v in text.items() if k.startswith(PNG_TEXT_PREFIX)}


def make_grid(rows: Iterable[Iterable[Image.Image]], scale: int = 4, pad: int = 2) -> Image.Image:
    """A contact sheet: one row per list of images, upscaled with nearest neighbour."""
    rows = [list(r) for r in rows if r]
    if not rows:
        return Image.new("L", (1, 1))
    cell_w = max(im.width for r in rows for im in r) * scale
    cell_h = max(im.height for r in rows for im in r) * scale
    ncols = max(len(r) for r in rows)
    mode = "RGB" if any(im.mode not in ("L", "1") for r in rows for im in r) else "L"
    sheet = Image.new(mode, (ncols * (cell_w + pad) + pad, len(rows) * (cell_h + pad) + pad), color=0)
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            big = im.convert(mode).resize((im.width * scale, im.height * scale), Image.NEAREST)
            sheet.paste(big, (pad + x * (cell_w + pad), pad + y * (cell_h + pad)))
    return sheet
