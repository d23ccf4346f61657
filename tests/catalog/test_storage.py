"""One read layer: the same catalog read from a folder, an S3 bucket (moto) and another fsspec filesystem."""

from __future__ import annotations

import fsspec
import pytest

from catalog import Catalog, open_version, samples_to_table
from catalog.dvc_io import read_verified_rows
from catalog.layout import manifest_key
from catalog.objectstore import ObjectStore
from catalog.publish import push
from catalog.storage import Storage
from catalog.verify import verify_storage
from tests.conftest import make_samples
from tests.s3_server import moto_s3


@pytest.fixture
def cat(tmp_path):
    cat = Catalog(tmp_path / "cat")
    cat.create("ds", "synthetic", description="two versions")
    for start in (0, 10):
        rows = make_samples(6, start=start)
        rows[0].status = "dropped_duplicate"
        cat.commit("ds", [cat.write_shard("ds", samples_to_table(rows))])
    return cat


@pytest.fixture
def memory_copy(cat, tmp_path):
    """The catalog's files copied into fsspec's in-memory filesystem (no lock or temp files)."""
    mem = fsspec.filesystem("memory")
    root = f"/{tmp_path.name}"
    for path in cat.root.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            mem.pipe_file(f"{root}/{path.relative_to(cat.root).as_posix()}", path.read_bytes())
    yield Storage.over(mem, root)
    mem.rm(root, recursive=True)


def test_a_folder_a_bucket_and_a_memory_filesystem_read_alike(cat, memory_copy):
    with moto_s3() as server:
        url = f"s3://{server.bucket()}/c"
        push(cat, "ds", url, server.options)
        stores = {"local": cat.storage, "s3": ObjectStore(url, server.options), "memory": memory_copy}
        expected = open_version(cat, "ds").table(status="all")
        for where, storage in stores.items():
            assert storage.names() == ["ds"], where
            assert storage.info("ds") == cat.info("ds") and storage.info("nope") is None, where
            assert storage.head("ds") == (2, cat.head_sha256("ds")) and storage.head("nope") == (0, None), where
            assert storage.manifest_bytes("ds", 1) == cat.manifest_path("ds", 1).read_bytes(), where
            assert storage.read(manifest_key("ds", 3)) is None, where
            assert read_verified_rows(storage, cat.manifest("ds"), None, "all", None).equals(expected), where
            report = verify_storage(storage, "ds")
            assert report.ok and (report.manifests_checked, report.shards_checked) == (2, 2), where
            assert report.id_segments_checked == 2, where


def test_a_local_storage_names_files_by_the_catalog_root(cat):
    assert cat.storage.where(manifest_key("ds", 1)) == str(cat.manifest_path("ds", 1))
    assert Storage.over(fsspec.filesystem("memory"), "").where("ds/HEAD") == "ds/HEAD"
