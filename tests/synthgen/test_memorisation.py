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


def test_distinct_16_bit_images_have_distinct_grey_thumbnails_not_clipped_white():
    ramp = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16  # 0..65520
    up, across = Image.fromarray(ramp), Image.fromarray(ramp.T.copy())
    assert up.mode == "I;16"
    a, b = grey(up, THUMB), grey(across, THUMB)
    assert not np.array_equal(a, b) and a.max() < 255  # clipped, both were all 255
    assert np.array_equal(a, grey(Image.fromarray((ramp >> 8).astype(np.uint8)), THUMB))  # its high byte


def test_the_grey_thumbnail_of_an_8_bit_image_is_its_direct_conversion():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 30, 3), dtype=np.uint8))
    for mode in ("RGB", "L", "P", "RGBA"):
        im = img.convert(mode)
        direct = np.asarray(im.convert("L").resize((THUMB, THUMB), Image.BILINEAR))
        assert grey(im, THUMB).tobytes() == direct.tobytes()
