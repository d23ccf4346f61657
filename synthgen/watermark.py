"""An invisible watermark carrying a short payload derived from the sample id (``invisible-watermark``).

The method is ``dwtDctSvd`` on the U channel at strength 72 by default:
the plain ``dwtDct`` that diffusers' SDXL pipeline applies does not survive
a JPEG q75 re-encode (bit accuracy ~0.48, chance level, at 256 and 512 px;
see bench/bench_watermark.py), while ``dwtDctSvd`` at 72 keeps all 48 bits
through JPEG q75 and a 75% resize from 512 px. The library refuses images
under 256x256 pixels, so tiny images (the 16-px demo) cannot carry it.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

BITS = 48  # 2^-48 chance that an unmarked file decodes to a given row's payload
# A decoded payload within this many bits of a row's is that row: at 48 bits the chance that
# an unmarked image lands that close to a given payload is ~5e-8 (sum of C(48, k), k <= 6, over 2^48).
MAX_DISTANCE = 6
MIN_PIXELS = 256 * 256  # invisible-watermark's own lower bound
Method = Literal["dwtDctSvd", "dwtDct"]


class WatermarkError(ValueError):
    """An image the watermark cannot be applied to (too small)."""


def payload(sample_id: str, bits: int = BITS) -> str:
    """The hex payload of a sample: the first ``bits`` bits of sha256(sample id)."""
    return hashlib.sha256(sample_id.encode()).hexdigest()[: bits // 4]


def _bits(hex_payload: str) -> list[int]:
    return [int(b) for b in bin(int(hex_payload, 16))[2:].zfill(len(hex_payload) * 4)]


def _rgb(pixels: np.ndarray) -> np.ndarray:
    # A grey image comes back as RGB: the mark lives in a chroma channel.
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return pixels
    return np.repeat(pixels.reshape(pixels.shape[0], pixels.shape[1], 1), 3, axis=2)


def _configs(method: Method, strength: int) -> dict:
    # Each method's default channel layout (Y untouched), at the chosen strength.
    return {"scales": [0, strength, 0] if method == "dwtDctSvd" else [0, strength, strength]}


def apply(pixels: np.ndarray, hex_payload: str, method: Method = "dwtDctSvd", strength: int = 72) -> np.ndarray:
    """``pixels`` (uint8 HWC RGB) with the payload embedded; raises WatermarkError under 256x256 pixels."""
    from imwatermark import WatermarkEncoder

    if pixels.shape[0] * pixels.shape[1] < MIN_PIXELS:
        raise WatermarkError(f"a {pixels.shape[1]}x{pixels.shape[0]} image is too small for the watermark "
                             f"(needs at least {MIN_PIXELS} pixels, e.g. 256x256); turn output.watermark off")
    rgb = _rgb(pixels)
    enc = WatermarkEncoder()
    enc.set_watermark("bits", _bits(hex_payload))
    bgr = enc.encode(np.ascontiguousarray(rgb[..., ::-1]), method, **_configs(method, strength))
    return np.ascontiguousarray(bgr[..., ::-1])


def read(pixels: np.ndarray, bits: int = BITS, method: Method = "dwtDctSvd", strength: int = 72) -> str | None:
    """The hex payload decoded from ``pixels`` (uint8 HWC RGB); None when too small to carry one."""
    from imwatermark import WatermarkDecoder

    if pixels.shape[0] * pixels.shape[1] < MIN_PIXELS:
        return None
    rgb = _rgb(pixels)
    out = WatermarkDecoder("bits", bits).decode(np.ascontiguousarray(rgb[..., ::-1]), method,
                                                 **_configs(method, strength))
    value = int("".join(str(int(b)) for b in out), 2)
    return f"{value:0{bits // 4}x}"


def distance(a: str, b: str) -> int:
    """Bits that differ between two hex payloads of the same length."""
    return bin(int(a, 16) ^ int(b, 16)).count("1")
