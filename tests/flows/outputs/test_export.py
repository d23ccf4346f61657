"""``export --format hf``: sharded Parquet plus a README that the real ``datasets`` library loads."""

from __future__ import annotations

import shutil

import pytest

import datasets
import pyarrow.parquet as pq

from catalog import Catalog, open_version, samples_to_table
from catalog.safe_paths import UnsafePathError, confined
from flows.outputs.export import export_hf
from synthgen.records import DUPLICATE
from tests.conftest import make_samples, small_job
from tests.flows.cli_process import assert_clean_error, synthgen


def test_hf_export_is_sharded_and_loads_kept_rows_with_their_features(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    cat.create("mix", "mixed")
    samples = make_samples(23, "synthetic") + make_samples(7, "real", start=100)
    for s in samples[:3]:
        s.status, s.drop_reason = DUPLICATE, "cosine 0.99 >= 0.97 to kept sample x (run)"
    with cat.lock("mix"):
        half = len(samples) // 2
        shards = [cat.write_shard("mix", samples_to_table(part)) for part in (samples[:half], samples[half:])]
        cat.commit("mix", shards)
    dest = tmp_path / "export"
    assert export_hf(open_version(cat, "mix"), dest, rows_per_shard=10) == 27
    files = sorted((dest / "data").glob("*.parquet"))
    assert [f.name for f in files] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert [pq.ParquetFile(f).metadata.num_rows for f in files] == [10, 10, 7]
    assert not list((dest / "data").glob("*.tmp"))
    ds = datasets.load_dataset(str(dest), split="train", cache_dir=str(tmp_path / "hf-cache"))  # no stale cache by folder name
    assert ds.num_rows == 27 and set(ds["status"]) == {"kept"}
    assert isinstance(ds.features["image"], datasets.Image)  # the image feature, not a struct of bytes
    catalog_features = datasets.Features.from_arrow_schema(pq.read_schema(open_version(cat, "mix").files[0]))
    assert isinstance(ds.features["label"], datasets.ClassLabel)  # named from label_name
    assert [ds.features["label"].int2str(r["label"]) for r in ds.select(range(5))] == ds["label_name"][:5]
    assert {k: v for k, v in ds.features.items() if k != "label"} == {
        k: v for k, v in catalog_features.items() if k != "label"}
    assert sorted(set(ds["origin"])) == ["real", "synthetic"] and ds["origin"].count("real") == 7
    assert ds[0]["image"].size == (16, 16)


def test_a_re_export_loads_its_own_rows_not_a_cached_earlier_export(tmp_path):
    # `datasets` caches a folder's rows: a README `configs:` block made the key the folder's name alone,
    # so a second export (same path, or another folder of that name) loaded the first one's rows.
    cat = Catalog(tmp_path / "catalog")
    cat.create("ds", "synthetic")
    for n in (5, 12):
        with cat.lock("ds"):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(n, "synthetic", start=n * 10)))])
    cache = str(tmp_path / "hf-cache")
    loaded = []
    for version, parent in [(1, "a"), (2, "a"), (2, "b")]:
        dest = tmp_path / parent / "hf"
        if dest.exists():
            shutil.rmtree(dest)
        export_hf(open_version(cat, f"ds@{version}"), dest)
        loaded.append(datasets.load_dataset(str(dest), split="train", cache_dir=cache).num_rows)
    assert loaded == [5, 17, 17]  # version 2 holds version 1's rows and 12 more


def _hostile_catalog(data, **fields):
    """A catalog whose one synthetic row carries ``fields`` (as a pulled catalog written by someone else may)."""
    import dataclasses

    cat = Catalog(data / "catalog")
    cat.create("pulled", "synthetic")
    rows = [dataclasses.replace(s, **fields) for s in make_samples(1)] + make_samples(2, start=1)
    cat.commit("pulled", [cat.write_shard("pulled", samples_to_table(rows, embedding_model="m"))], embedding_model="m")
    return data


@pytest.mark.parametrize("fields, named", [
    ({"class_name": "../../../../outside"}, "../../../../outside"),
    ({"class_name": "/an/absolute/path"}, "/an/absolute/path"),
    ({"class_name": ".."}, "'..'"),
    ({"sample_id": "../../../outside-file"}, "outside-file"),
    ({"sample_id": "/tmp/x"}, "/tmp/x"),
    ({"sample_id": "nul\x00byte"}, "control character"),
])
def test_export_refuses_names_from_rows_that_would_leave_its_folder(tmp_path, fields, named):
    data = _hostile_catalog(tmp_path / "deep" / "er" / "data", **fields)
    def outside_data():
        return sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(data))

    before = outside_data()
    proc = synthgen(data, "export", "pulled", str(tmp_path / "deep" / "er" / "out"), cwd=tmp_path)
    assert_clean_error(proc, [named, "refusing"])
    assert outside_data() == before  # nothing written: no export folder, nothing beside or above it
    assert not (tmp_path / "outside").exists() and not (tmp_path / "outside-file.png").exists()


def test_a_class_name_that_is_a_path_is_refused_before_anything_runs(tmp_path):
    import yaml

    spec = small_job()
    spec["conditioning"]["classes"][0]["name"] = "../../../../outside"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = synthgen(tmp_path / "data", "run", str(path))
    assert_clean_error(proc, ["conditioning.classes.0.name", "class name '../../../../outside'"])
    assert sorted(tmp_path.iterdir()) == [path]  # no data folder, nothing else


def test_confined_follows_links_and_refuses_one_that_leaves(tmp_path):
    dest, elsewhere = tmp_path / "dest", tmp_path / "elsewhere"
    dest.mkdir()
    elsewhere.mkdir()
    assert confined(dest, "seven", "s1.png") == dest / "seven" / "s1.png"
    (dest / "linked").symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="outside"):
        confined(dest, "linked", "s1.png")
    (dest / "seven").mkdir()
    (dest / "seven" / "s2.png").symlink_to(elsewhere / "victim.png")
    with pytest.raises(UnsafePathError, match="outside"):
        confined(dest, "seven", "s2.png")
    for bad in ("", ".", "..", "a/b", "/abs", "a\\b", "x\x00", "\x1b[2J"):
        with pytest.raises(UnsafePathError):
            confined(dest, bad)
