import numpy as np
from PIL import Image

from synthgen.memorisation import THUMB, grey, standardise, standardise_many


def test_standardising_a_stack_equals_standardising_each_image_bit_for_bit():
    rng = np.random.default_rng(0)
    greys = rng.integers(0, 256, (500, THUMB, THUMB), dtype=np.uint8)
    greys[:3] = 7  # flat images: std 0
    greys[3:6] = rng.integers(0, 2, (3, THUMB, THUMB))
    one_by_one = np.stack([standardise(g) for g in greys])
    assert standardise_many(greys).tobytes() == one_by_one.tobytes()


def test_the_grey_thumbnail_is_what_standardise_standardises():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    g = grey(img, THUMB)
    assert g.dtype == np.uint8 and g.shape == (THUMB, THUMB)
    assert standardise(g).tobytes() == standardise(img, THUMB).tobytes()
