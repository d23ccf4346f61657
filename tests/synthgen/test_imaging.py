"""Decoding refuses what would exhaust memory: too many pixels, files that are not regular files."""

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthgen.imaging import (
    MAX_PIXELS,
    ImageReadError,
    ImageTooLarge,
    decode,
    pixel_sha256,
    read_image_file,
    read_regular_file,
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
