"""The encode stage's PNG encoders: lossless, standard, deterministic, recorded in the spec's identity."""

import json

import datasets
import numpy as np
import pytest

from synthgen.imaging import array_to_pil, decode, encode_png, pixel_sha256
from synthgen.png import DEFAULT_PNG_ENCODER, array_sha256, encode_pixels
from synthgen.records import Provenance
from synthgen.spec import parse_spec
from synthgen.stages import Encode, shard_stages
from tests.conftest import small_job

_RNG = np.random.default_rng(0)
ARRAYS = {
    "L": _RNG.integers(0, 256, (24, 40), dtype=np.uint8),
    "L1": _RNG.integers(0, 256, (24, 40, 1), dtype=np.uint8),
    "RGB": _RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8),
    "RGBA": _RNG.integers(0, 256, (24, 40, 4), dtype=np.uint8),
    "flat RGB": np.full((64, 64, 3), 7, np.uint8),
    "float L1": _RNG.random((24, 40, 1), dtype=np.float32),  # floats in [0, 1]: rounded as array_to_pil does
}


@pytest.mark.parametrize("encoder", ["opencv", "pillow"])
@pytest.mark.parametrize("level", [0, 1, 9])
@pytest.mark.parametrize("name", list(ARRAYS))
def test_every_encoder_is_lossless_and_hashes_the_pixels(encoder, level, name):
    arr = ARRAYS[name]
    png, sha = encode_pixels(arr, level, encoder)
    img = decode(png)
    expected = array_to_pil(arr)
    assert img.mode == expected.mode and img.size == expected.size
    assert np.array_equal(np.asarray(img), np.asarray(expected))
    assert sha == pixel_sha256(img) == pixel_sha256(expected) == array_sha256(np.asarray(expected))
    assert encode_pixels(arr.copy(), level, encoder)[0] == png  # deterministic


def test_the_hf_image_feature_decodes_the_default_encoders_bytes():
    arr = ARRAYS["RGB"]
    png, _ = encode_pixels(arr, 1, DEFAULT_PNG_ENCODER)
    img = datasets.Image().decode_example({"bytes": png, "path": None})
    assert np.array_equal(np.asarray(img), arr)


def test_the_pillow_encoder_writes_the_bytes_of_jobs_from_before_the_field():
    arr = ARRAYS["RGB"]
    assert encode_pixels(arr, 1, "pillow")[0] == encode_png(array_to_pil(arr), level=1)
    assert encode_pixels(arr, 1, "opencv")[0] != encode_pixels(arr, 1, "pillow")[0]


def test_the_encoder_is_part_of_the_jobs_identity_except_the_old_one():
    spec = small_job()
    new = parse_spec(spec)
    old = parse_spec({**spec, "output": {**spec["output"], "png_encoder": "pillow"}})
    assert new.output.png_encoder == DEFAULT_PNG_ENCODER == "opencv"
    assert json.loads(new.canonical_json())["output"]["png_encoder"] == "opencv"
    # A job from before the field ran Pillow: naming it keeps that job's identity (sample ids, resume).
    assert "png_encoder" not in json.loads(old.canonical_json())["output"]
    assert new.digest() != old.digest()


def test_the_encode_stage_uses_the_encoder_its_provenance_records():
    prov = Provenance(*(["x"] * 7), 1, 1.0, 1, "float32", "cpu", "t", "d", "s", None, "m", 0.9, 0.9, None, None,
                      png_compress_level=1, png_encoder="pillow")
    stages = shard_stages(generator=None, provenance=prov)
    encode = next(s for s in stages if isinstance(s, Encode))
    assert encode.encoder == "pillow"
    with pytest.raises(ValueError, match="differs from the 'pillow' the provenance records"):
        shard_stages(generator=None, provenance=prov, png_encoder="opencv")
