"""Image conversions, hashing, PNG provenance chunks and sample grids."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import re
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

PNG_TEXT_PREFIX = "synthgen:"

# The largest image decoded anywhere: Pillow's own default (about 9459 x 9459, 268 MB as RGBA). Pillow only
# *warns* between one and two times its limit, and a 140 KB PNG can declare 12000 x 12000 (2.8 GB decoded),
# so the size is checked from the header, before any pixel is decoded, and refused with an error.
MAX_PIXELS = 89_478_485
# The largest file read whole: far above any real photo or scan, far below what would exhaust memory.
MAX_FILE_BYTES = 512 << 20
ORIENTATION = 0x0112  # the EXIF tag that says how a camera's pixels are to be turned for display
# Our check replaces Pillow's warning (printed by a CLI as noise after the refusal says it all).
warnings.simplefilter("ignore", Image.DecompressionBombWarning)


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


def to_8bit(img: Image.Image) -> Image.Image:
    """``img`` with 8-bit samples: unchanged unless its mode is 16-bit or wider (``I;16*``, ``I``, ``F``).

    Pillow's ``convert("L")`` / ``convert("RGB")`` clip such pixels to 0..255, which turns a 16-bit
    photo or scan all white (and distinct images into the same thumbnail and embedding). So they are
    scaled first, to an ``L`` image: ``I;16*`` keeps its high byte (``>> 8``); ``I`` (32-bit integers)
    likewise once any value exceeds 255 (clipped to 0..65535, the 16-bit range), else it is already
    8-bit and kept as is, negatives as 0; ``F`` is assumed to be in [0, 1] when its largest value is at
    most 1 (scaled by 255, rounded, as ``to_uint8``), else clipped to 0..255 and rounded (NaN as 0).
    """
    if not (img.mode.startswith("I;16") or img.mode in ("I", "F")):
        return img
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = a.astype(np.uint16) >> 8
    elif img.mode == "I":
        a = np.clip(a, 0, 65535)
        out = a >> 8 if a.size and a.max() > 255 else a
    else:
        a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        out = np.clip(a, 0.0, 1.0) * 255 if a.size and a.max() <= 1 else np.clip(a, 0.0, 255.0)
        out = out.round()
    return Image.fromarray(out.astype(np.uint8), mode="L")


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
    # A large image in strips of rows: the same bytes as one ``tobytes()``, without a second full copy.
    rows = max(1, (16 << 20) // (4 * max(1, img.width)))
    if img.height <= rows:
        h.update(img.tobytes())
    else:
        for top in range(0, img.height, rows):
            h.update(img.crop((0, top, img.width, min(img.height, top + rows))).tobytes())
    return h.hexdigest()


class ImageReadError(ValueError):
    """A file that cannot be decoded as an image; the message names the file and why."""


class ImageTooLarge(ImageReadError):
    """An image whose header declares more pixels than the limit; refused before decoding."""


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A lazily decoded PIL image (header read only); ``ImageTooLarge`` above ``max_pixels``."""
    try:
        img = Image.open(io.BytesIO(data))
    # Over twice Pillow's own limit it refuses at open; over once, it warns, which is an error where
    # warnings are (python -W error).
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's message holds the declared size ("Image size (N pixels) exceeds ..."): say it, when it is there.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(declared.group(1)):,} pixels" if declared else f"more than {Image.MAX_IMAGE_PIXELS:,} pixels"
        raise ImageTooLarge(f"{size}, more than the limit of {max_pixels:,}") from None
    if img.width * img.height > max_pixels:
        raise ImageTooLarge(f"{img.width}x{img.height} is {img.width * img.height:,} pixels, more than the limit "
                            f"of {max_pixels:,}")
    return img


def decode(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """PIL image from encoded bytes (fully loaded, turned upright); ``ImageTooLarge`` above ``max_pixels``, checked first."""
    img = open_image(data, max_pixels)
    img.load()
    return upright(img)


# How to turn the stored pixels for each EXIF orientation (TIFF 6.0 / EXIF 2.3; Pillow's own table).
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}


def orientation(img: Image.Image) -> int:
    """The EXIF orientation of ``img`` (1: as stored), read from its header; 1 when absent or unreadable."""
    try:
        value = img.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - an EXIF block Pillow cannot parse says nothing about orientation
        return 1
    return value if value in TURNS else 1


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says; ``img`` itself when it has none (or says "as stored").

    A phone stores a portrait photo's pixels sideways plus this tag; viewers, browsers and Hugging Face
    ``datasets`` show it turned. Everything synthgen derives from an image (its embedding, guard
    thumbnail, pixel hash, loaders' tensors, exports) uses what a person sees, so a generated image is
    compared with the real photo as it looks. The file's bytes are kept as they are.

    Only the pixels are turned (``Image.transpose``): Pillow's ``exif_transpose`` also re-encodes the
    EXIF block and fails on some that cameras write. The turned image keeps the file's format and PNG
    text chunks (read by ``audit FILE``).
    """
    turn = TURNS.get(orientation(img))
    if turn is None:
        return img
    out = img.transpose(turn)
    out.format = img.format
    text = getattr(img, "text", None)
    if text:
        out.text = dict(text)
    return out


def read_regular_file(path: Path | str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes; ``ImageReadError`` naming it for anything else or anything larger than ``max_bytes``.

    Opened without blocking and checked on the open descriptor: a FIFO would block ``open`` until a
    writer came, and a link to ``/dev/zero`` would be read until memory ran out.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):  # exists() is False for a loop too: not "dangling"
            raise ImageReadError(f"{path}: symlink loop (to {os.readlink(path)})") from None
        if os.path.islink(path) and not os.path.exists(path):
            raise ImageReadError(f"{path}: dangling symlink (to {os.readlink(path)})") from None
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"{path}: not a regular file ({_file_kind(st.st_mode)}); only image files are read")
        if st.st_size > max_bytes:
            raise ImageReadError(f"{path}: {st.st_size:,} bytes, more than the limit of {max_bytes:,} for one image")
        # Ask for the size fstat gave (plus one byte, to see growth): asking for max_bytes + 1 makes
        # every read allocate and map 512 MB, which was a third of an ingest's CPU time.
        want = st.st_size + 1
        with os.fdopen(fd, "rb", closefd=False, buffering=0) as f:
            data = f.read(want)
            if len(data) == want:  # grew since fstat (or a /proc file, size 0): read on, up to one byte past the limit
                data += f.read(max_bytes + 1 - len(data))
        if len(data) > max_bytes:  # grew while being read
            raise ImageReadError(f"{path}: more than the limit of {max_bytes:,} bytes for one image")
        return data
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a plain file"


@contextmanager
def naming(where: str) -> Iterator[None]:
    """Turn any failure to open or decode an image inside the block into an ``ImageReadError`` naming ``where``."""
    try:
        yield
    except ImageTooLarge as exc:
        raise ImageTooLarge(f"{where}: image too large: {exc}") from None
    except (ImageReadError, MemoryError):
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # PIL names a BytesIO, not the file, and says "cannot identify image file" for any non-image.
        reason = "not an image PIL can decode" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise ImageReadError(f"{where}: {reason}") from None
    except Exception as exc:
        # A damaged file makes Pillow's plugins raise anything (KeyError for a garbled mode, AttributeError,
        # NotImplementedError): still one bad file, not a crash of the whole run. MemoryError, and
        # BaseExceptions (KeyboardInterrupt, SystemExit), are not about the file and go on.
        raise ImageReadError(f"{where}: damaged or unsupported image (Pillow raised {type(exc).__name__}: "
                             f"{exc})") from None


def decode_named(data: bytes, where: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """``decode`` with every failure as an ``ImageReadError`` that names ``where`` (a file or URL)."""
    with naming(where):
        return decode(data, max_pixels)


def read_image_file(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[bytes, Image.Image]:
    """A regular file's bytes and its fully decoded image; ``ImageReadError`` naming the file if it is not one."""
    data = read_regular_file(path)
    return data, decode_named(data, str(path), max_pixels)


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
