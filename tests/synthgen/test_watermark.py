"""The invisible watermark: payloads survive JPEG q75 and a 75% resize at 256 and 512 px (bench/bench_watermark.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from synthgen.records import Sample
from synthgen.spec import SpecError, parse_spec
from synthgen.stages import Watermark
from synthgen.watermark import MAX_DISTANCE, WatermarkError, apply, distance, payload, read
from tests.conftest import small_job


def _photo(size: int, name: str = "china.jpg") -> np.ndarray:
    return np.asarray(Image.fromarray(load_sample_image(name)).resize((size, size), Image.BICUBIC))


def _reencode(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Metadata gone: resized by ``scale``, saved as JPEG q75, then scaled back to the generated size (as audit does)."""
    im = Image.fromarray(pixels)
    small = im.resize((int(im.width * scale), int(im.height * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=75)
    return np.asarray(Image.open(buf).convert("RGB").resize(im.size, Image.BICUBIC))


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_payload_survives_jpeg_exactly_and_a_resize_within_the_tolerance(size, name):
    p = payload(f"row-{size}-{name}")
    marked = apply(_photo(size, name), p)
    assert read(marked) == p
    assert read(_reencode(marked, 1.0)) == p  # JPEG q75 alone: every bit (bench: 16/16 at both sizes)
    assert distance(read(_reencode(marked, 0.75)), p) <= MAX_DISTANCE  # bench: max 6 bits at 256, 4 at 512
    assert distance(read(_reencode(_photo(size, name), 0.75)), p) > MAX_DISTANCE  # an unmarked copy is no match


def test_sdxl_dwtdct_does_not_survive_jpeg_which_is_why_it_is_not_the_default():
    p = payload("row")
    marked = apply(_photo(512), p, "dwtDct", 36)
    assert distance(read(_reencode(marked, 1.0), method="dwtDct", strength=36), p) > MAX_DISTANCE


def test_stage_marks_pixels_and_records_the_payload():
    s = Sample("abc", "synthetic")
    s.pixels = _photo(256)
    Watermark()([s])
    assert s.watermark == payload("abc") and read(s.pixels) == s.watermark
    tiny = Sample("t", "synthetic")
    tiny.pixels = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(WatermarkError, match="too small"):
        Watermark()([tiny])


def test_spec_keeps_it_off_by_default_and_refuses_it_for_small_images():
    spec = parse_spec(small_job())
    assert not spec.output.watermark.enabled and "watermark" not in spec.canonical_json()  # old digests stay
    on = parse_spec(small_job(generator={"height": 256, "width": 256}, output={"dataset": "d", "shard_size": 8,
                                                                                "watermark": {"enabled": True}}))
    assert "watermark" in on.canonical_json()
    with pytest.raises(SpecError, match="at least 256x256"):
        parse_spec(small_job(generator={"height": 16, "width": 16}, output={"dataset": "d", "shard_size": 8,
                                                                             "watermark": {"enabled": True}}))
