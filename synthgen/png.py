"""The encode stage's per-image work: lossless PNG bytes and the pixel hash of one uint8 array.

Two encoders, named in the spec (``output.png_encoder``) and recorded per row:

* ``opencv``: libpng through OpenCV with the Up filter and zlib's RLE
  strategy. ``cv2.imencode`` releases the GIL, so the engine's worker
  threads encode side by side with no process pool and no copies between
  processes. At 512 px it is ~3x faster than Pillow at level 1 and its files
  are smaller on photos and noisy images, ~18% larger on smooth gradients
  (``bench/bench_png.py``). The default.
* ``pillow``: Pillow's own encoder (adaptive filters, zlib's default
  strategy), the bytes of every row written before the field existed. Its
  in-memory encode holds the GIL, so with several workers it runs in a
  process pool (``synthgen.parallel``).

Both write standard 8-bit PNGs that PIL, the HF ``Image`` feature and every
reader decode to the same pixels. A name stands for one fixed recipe:
changing a recipe's settings needs a new name, so stored rows keep saying
what made their bytes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Literal

import numpy as np

PngEncoder = Literal["opencv", "pillow"]
DEFAULT_PNG_ENCODER: PngEncoder = "opencv"
# Encoders whose work releases the GIL: the engine's threads run them inline.
GIL_FREE: frozenset[str] = frozenset({"opencv"})

_MODES = {2: "L", 1: "L", 3: "RGB", 4: "RGBA"}  # channels (2: no channel axis) -> PIL mode


def pixel_mode(arr: np.ndarray) -> str:
    """The PIL mode of a uint8 HWC (or HW) array, as ``imaging.array_to_pil`` makes it."""
    return _MODES[2 if arr.ndim == 2 else arr.shape[-1]]


def array_sha256(arr: np.ndarray) -> str:
    """``imaging.pixel_sha256`` of the array's image, hashed from the array itself (no PIL copy)."""
    h = hashlib.sha256(f"{pixel_mode(arr)}:{arr.shape[1]}x{arr.shape[0]}:".encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))  # hashlib releases the GIL for big buffers
    return h.hexdigest()


@lru_cache(maxsize=1)
def _cv2():
    import cv2

    # OpenCV's own pool would spread cvtColor over every core, the sampler's too: the
    # engine already runs one encode per worker thread.
    cv2.setNumThreads(1)
    return cv2


def encode_opencv(arr: np.ndarray, level: int) -> bytes:
    """PNG bytes of a uint8 HW / HWC (L, RGB, RGBA) array through libpng, with the GIL released."""
    cv2 = _cv2()
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    elif arr.ndim == 3:  # OpenCV writes BGR(A)
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if arr.shape[-1] == 3 else cv2.COLOR_RGBA2BGRA)
    # Up filter + RLE: at level 1 this is ~3x faster than adaptive filters with
    # LZ77 matching, and smaller on photo-like images (bench/bench_png.py).
    # Level 0 stores the rows as they are: filtering them would only cost time.
    params = [cv2.IMWRITE_PNG_COMPRESSION, level,
              cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP if level else cv2.IMWRITE_PNG_FILTER_NONE,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE if level else cv2.IMWRITE_PNG_STRATEGY_DEFAULT]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {arr.dtype} array of shape {arr.shape} as PNG")
    return buf.tobytes()


def encode_pillow(arr: np.ndarray, level: int) -> bytes:
    """PNG bytes through Pillow: the bytes of rows written before ``png_encoder`` existed.

    Pillow holds the GIL while it encodes into memory (its ``_encode`` has no
    ``ImagingSectionEnter``), so threads cannot share this work.
    """
    from synthgen.imaging import array_to_pil, encode_png

    return encode_png(array_to_pil(arr), level=level)


def encode_pixels(arr: np.ndarray, level: int, encoder: PngEncoder = DEFAULT_PNG_ENCODER) -> tuple[bytes, str]:
    """(PNG bytes, pixel sha256) of one uint8 array: the encode stage's per-image work.

    A plain function of picklable values, so the Pillow path can run in a worker process.
    A float array in [0, 1] is rounded to uint8 first, as ``imaging.array_to_pil`` does.
    """
    from synthgen.imaging import to_uint8

    arr = to_uint8(arr)
    png = encode_opencv(arr, level) if encoder == "opencv" else encode_pillow(arr, level)
    return png, array_sha256(arr)
