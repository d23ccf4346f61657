import numpy as np

from synthgen.digits import CLASS_NAMES, caption, load_digits_uint8, upsample
from synthgen.embedder import load_embedder
from synthgen.spec import EmbedderSpec
from tests.tiny_clip import build_tiny_clip
from PIL import Image


def held_out_digits(n_per_class=10):
    images, labels = load_digits_uint8()
    idx = [i for i in range(len(labels)) if i % 5 == 0]  # the embedder's held-out split
    pick = [i for c in range(10) for i in [j for j in idx if labels[j] == c][:n_per_class]]
    up = (upsample(images[pick], 16) * 255).round().astype(np.uint8)
    return [Image.fromarray(a, mode="L") for a in up], labels[pick]


def test_embedded_clip_zero_shot_on_held_out_digits(embedder):
    images, labels = held_out_digits()
    img = embedder.embed_images(images)
    txt = embedder.embed_texts([caption(n) for n in CLASS_NAMES])
    assert np.allclose(np.linalg.norm(img, axis=1), 1, atol=1e-4)
    accuracy = float(((img @ txt.T).argmax(1) == labels).mean())
    assert accuracy >= 0.9
    sims = img @ img.T
    np.fill_diagonal(sims, -1)
    assert sims.max() < 0.9999  # different digits stay distinguishable (no collapse per class)


def test_spec_chooses_the_embedder(tmp_path):
    other = load_embedder(EmbedderSpec(model=str(build_tiny_clip(tmp_path / "clip"))))
    assert other.name.startswith(str(tmp_path)) and "@" in other.name
    assert other.embed_images([Image.new("L", (16, 16))]).shape == (1, 16)


def test_an_embedding_split_between_threads_and_a_batch_is_embed_images_bit_for_bit(embedder):
    # Ingest prepares each image on its decode threads and runs the batch after: the same numbers.
    rng = np.random.default_rng(1)
    shapes = [(16, 16, 3), (37, 100, 3), (300, 20, 3), (256, 256, 3), (5, 5, 3), (64, 48, 1)]
    images = [Image.fromarray(rng.integers(0, 255, s, dtype=np.uint8).squeeze()) for s in shapes]
    whole = embedder.embed_images(images)
    split = embedder.embed_prepared([embedder.prepare_image(im) for im in images])
    assert np.array_equal(whole, split)
