"""``confined``: one check for every path built from data (class names, sample ids, manifest entries)."""

from __future__ import annotations

import pytest

from catalog.safe_paths import UnsafePathError, check_name, confined, confined_relative
from catalog.store import CatalogError


@pytest.mark.parametrize("parts", [
    ("..", "x.png"), ("../../outside",), ("/an/absolute/path",), ("a/b",), ("a\\b",), ("x\0.png",), ("",), (".",),
    ("ok", ".."),
])
def test_a_part_that_is_not_one_plain_name_is_refused(tmp_path, parts):
    with pytest.raises(UnsafePathError):
        confined(tmp_path, *parts)


def test_a_symlink_leading_out_is_refused_and_plain_names_pass(tmp_path):
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        confined(dest, "link", "x.png")
    assert confined(dest, "seven", "s0001.png") == dest / "seven" / "s0001.png"


def test_relative_paths_from_data(tmp_path):
    assert confined_relative(tmp_path, "shards/ab.parquet") == tmp_path / "shards" / "ab.parquet"
    for rel in ("../secret/shards/x.parquet", "/etc/passwd", "shards//x", "shards\\x"):
        with pytest.raises(UnsafePathError):
            confined_relative(tmp_path, rel)


@pytest.mark.parametrize("name", ["nl\n", "Upper", "-dash", "a/b", "", "x" * 65, "a b"])
def test_bad_dataset_names(name):
    with pytest.raises(CatalogError, match="invalid dataset name"):
        check_name(name)
