"""Decoding refuses what would exhaust memory: too many pixels, files that are not regular files."""

import hashlib
import io
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from synthgen.imaging import (
    MAX_PIXELS,
    ImageReadError,
    ImageTooLarge,
    decode,
    naming,
    pixel_sha256,
    png_text,
    read_image_file,
    read_regular_file,
    to_8bit,
    upright,
)


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path):
    path = tmp_path / "big.png"
    Image.new("1", (12_000, 12_000), 1).save(path)  # 144 M pixels: Pillow itself would only warn, and decode
    with pytest.raises(ImageTooLarge, match=r"12000x12000 is 144,000,000 pixels, more than the limit"):
        decode(path.read_bytes())
    with pytest.raises(ImageTooLarge, match=f"{path}: image too large"):
        read_image_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error: Pillow's warning is raised, and still reads as ours
        with pytest.raises(ImageTooLarge, match=f"{path}: image too large"):
            read_image_file(path)
        with pytest.raises(ImageTooLarge, match=r"^144,000,000 pixels, more than the limit of"):  # the declared size
            decode(path.read_bytes())
    side = int(MAX_PIXELS ** 0.5)
    Image.new("1", (side, side), 1).save(path)
    assert decode(path.read_bytes()).size == (side, side)  # at the limit: decoded


def test_only_regular_files_are_read(tmp_path):
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    with pytest.raises(ImageReadError, match=r"zero.png: not a regular file \(a character device\)"):
        read_regular_file(tmp_path / "zero.png")
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(ImageReadError, match=r"pipe.png: not a regular file \(a FIFO\)"):  # and does not block
        read_regular_file(tmp_path / "pipe.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageReadError, match=r"gone.png: dangling symlink"):
        read_regular_file(tmp_path / "gone.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    with pytest.raises(ImageReadError, match=r"loop.png: symlink loop \(to loop.png\)"):
        read_regular_file(tmp_path / "loop.png")
    (tmp_path / "big.bin").write_bytes(b"x" * 100)
    with pytest.raises(ImageReadError, match="100 bytes, more than the limit of 99"):
        read_regular_file(tmp_path / "big.bin", max_bytes=99)


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "I;16", "P"])
def test_the_pixel_hash_of_a_large_image_hashed_in_strips_is_the_hash_of_all_its_bytes(mode):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (3001, 2500, 3), dtype=np.uint8)).convert(mode)
    whole = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode() + img.tobytes()).hexdigest()
    assert pixel_sha256(img) == whole


def test_a_file_is_read_whole_whatever_its_reported_size(tmp_path):
    data = bytes(range(256)) * 40
    (tmp_path / "a.bin").write_bytes(data)
    assert read_regular_file(tmp_path / "a.bin") == data
    assert read_regular_file(tmp_path / "a.bin", max_bytes=len(data)) == data
    # A file whose size says 0 but that has content (procfs) is read to its end, within the limit.
    proc = Path("/proc/self/cmdline")
    assert read_regular_file(proc) == proc.read_bytes()
    with pytest.raises(ImageReadError, match="limit"):
        read_regular_file(proc, max_bytes=2)


@pytest.mark.parametrize("exc", [KeyError("RGB im\x12ge"), AttributeError("stkoffset"), NotImplementedError("format 0"),
                                 OSError("truncated"), ValueError("bad"), SyntaxError("bad header")])
def test_anything_pillow_raises_on_a_file_names_the_file(exc):
    with pytest.raises(ImageReadError, match=r"^photo.jpg: "):
        with naming("photo.jpg"):
            raise exc


@pytest.mark.parametrize("exc", [MemoryError(), KeyboardInterrupt(), SystemExit(1)])
def test_what_is_not_about_the_file_goes_on_unchanged(exc):
    with pytest.raises(type(exc)):
        with naming("photo.jpg"):
            raise exc


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I"])
def test_16_bit_images_keep_their_high_byte(mode):
    ramp = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # 0..63000
    img = Image.fromarray(ramp).convert(mode) if mode != "I;16B" else Image.fromarray(ramp.astype(">u2"))
    assert img.mode == mode
    out = to_8bit(img)
    assert out.mode == "L" and np.array_equal(np.asarray(out), (ramp >> 8).astype(np.uint8))


def test_an_i_image_of_8_bit_values_and_a_float_image_are_scaled_as_documented():
    small = np.arange(64, dtype=np.int32).reshape(8, 8) * 4 - 10  # -10..242: already 8-bit (negatives as 0)
    assert np.array_equal(np.asarray(to_8bit(Image.fromarray(small))), np.clip(small, 0, 255).astype(np.uint8))
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)  # in [0, 1]: scaled by 255
    assert np.array_equal(np.asarray(to_8bit(Image.fromarray(unit))), (unit * 255).round().astype(np.uint8))
    wide = np.linspace(-50, 300, 64, dtype=np.float32).reshape(8, 8)  # beyond 1: clipped to 0..255
    want = np.clip(wide, 0, 255).round().astype(np.uint8)
    assert np.array_equal(np.asarray(to_8bit(Image.fromarray(wide))), want)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "1", "LA", "CMYK"])
def test_8_bit_images_are_left_as_they_are(mode):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).convert(mode)
    assert to_8bit(img) is img


# How each EXIF orientation stores an upright picture (what a camera writes), as numpy on (rows, columns):
# decoding must undo it. 6 is a phone held upright: the pixels are stored turned a quarter to the left.
STORED_AS = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, -1),
}


def _png_with_orientation(arr: np.ndarray, orientation: int | None) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, "PNG", exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_an_image_is_decoded_as_its_exif_orientation_says_a_viewer_shows_it(orientation):
    picture = np.random.RandomState(orientation).randint(0, 255, (6, 10, 3)).astype(np.uint8)  # 6 rows, 10 columns
    stored = STORED_AS[orientation](picture)
    assert not np.array_equal(stored, picture)
    img = decode(_png_with_orientation(stored, orientation))
    assert np.array_equal(np.asarray(img), picture)
    assert pixel_sha256(img) == pixel_sha256(Image.fromarray(picture))  # the hash of what a person sees


@pytest.mark.parametrize("orientation", [None, 1])
def test_an_image_stored_upright_is_decoded_as_stored(orientation):
    picture = np.random.RandomState(0).randint(0, 255, (6, 10, 3)).astype(np.uint8)
    assert np.array_equal(np.asarray(decode(_png_with_orientation(picture, orientation))), picture)


def test_an_exif_block_pillow_cannot_parse_leaves_the_image_as_stored():
    class Unreadable:
        def getexif(self):
            raise SyntaxError("not a TIFF file")

    img = Unreadable()
    assert upright(img) is img


def test_an_orientation_beside_an_exif_field_pillow_cannot_write_back_still_turns_the_image():
    # A camera's EXIF with a resolution stored as the signed fraction -1/0 (Pillow #8965): Pillow's
    # exif_transpose re-encodes the block and fails on it; only the pixels need turning.
    ifd = (struct.pack("<H", 2) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<HHII", 0x011A, 10, 1, 38)
           + struct.pack("<I", 0))
    exif = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<ii", -1, 0)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((6, 10, 3), np.uint8)).save(buf, "JPEG", exif=exif)
    assert decode(buf.getvalue()).size == (6, 10)


def test_a_turned_image_keeps_its_format_and_provenance_chunks():
    exif = Image.Exif()
    exif[0x0112] = 6
    info = PngImagePlugin.PngInfo()
    info.add_text("synthgen:sample_id", "s00001")
    png, jpeg = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(png, "PNG", pnginfo=info, exif=exif.tobytes())
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(jpeg, "JPEG", exif=exif.tobytes())
    turned_png, turned_jpeg = decode(png.getvalue()), decode(jpeg.getvalue())
    assert turned_png.size == turned_jpeg.size == (4, 6)
    assert turned_png.format == "PNG" and png_text(turned_png) == {"sample_id": "s00001"}
    assert turned_jpeg.format == "JPEG"
