"""CLIP preprocessing and guard thumbnails as tensor ops, against the model's own processor and PIL.

Stated tolerance: embeddings through ``Embedder.embed_pixels`` (tensor
preprocessing feeding the CLIP tower) have cosine >= 0.9999 with those of
the model's own PIL processor (through sentence-transformers) when the image
is resampled, and agree to 1e-5 when it is already at the model's size.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from synthgen.embedder import load_embedder
from synthgen.preprocess import grey, thumbnails, to_batch
from synthgen.spec import EmbedderSpec
from tests.tiny_clip import build_tiny_clip


def _photos(n: int, px: int, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(px)
    out = []
    for _ in range(n):
        small = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((px, px), Image.BICUBIC)
        arr = np.clip(np.asarray(small, np.float32) + rng.normal(0, 3, (px, px, 3)), 0, 255).astype(np.uint8)
        out.append(arr[..., :channels])
    return np.stack(out)


def _pil(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


@pytest.fixture(scope="module")
def clip224(tmp_path_factory):
    path = build_tiny_clip(tmp_path_factory.mktemp("clip224") / "clip", image_size=224, patch_size=32)
    return load_embedder(EmbedderSpec(model=str(path), device="cpu"))


@pytest.mark.parametrize("px", [512, 300, 224, 96])
def test_tensor_preprocessing_matches_the_processor_on_a_224px_patch32_clip(clip224, px):
    arrays = _photos(6, px)
    ours = clip224.embed_pixels(list(arrays), tensor_ops=True)
    theirs = clip224.embed_images([_pil(a) for a in arrays])
    assert ours.shape == theirs.shape and np.all((ours * theirs).sum(axis=1) >= 0.9999)
    if px == 224:  # no resampling: the same numbers
        assert np.abs(ours - theirs).max() < 1e-5


def test_embedded_clip_on_grey_digits_gives_the_processor_embeddings(embedder):
    arrays = _photos(8, 16, channels=1)
    ours = embedder.embed_pixels(list(arrays), tensor_ops=True)
    theirs = embedder.embed_images([_pil(a) for a in arrays])
    assert np.abs(ours - theirs).max() < 1e-5


def test_grey_is_bit_exact_with_pil_and_thumbnails_within_one_grey_level():
    arrays = _photos(4, 64)
    g = grey(to_batch(list(arrays), "cpu")).numpy()
    assert np.array_equal(g, np.stack([np.asarray(_pil(a).convert("L")) for a in arrays]))
    thumbs = thumbnails(torch.from_numpy(arrays), 16)
    pil = np.stack([np.asarray(_pil(a).convert("L").resize((16, 16), Image.BILINEAR), np.float32) for a in arrays])
    assert thumbs.shape == (4, 16, 16) and np.abs(thumbs - pil).max() <= 1.0
