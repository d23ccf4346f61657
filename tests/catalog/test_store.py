import pyarrow.parquet as pq
import pytest

from catalog import Catalog, CatalogError, open_version, samples_to_table
from catalog.manifest import sha256_file
from tests.conftest import make_samples


def commit_rows(cat, name, n, start, **kw):
    with cat.lock(name):
        shard = cat.write_shard(name, samples_to_table(make_samples(n, start=start)))
        return cat.commit(name, [shard], **kw)


def test_versions_are_immutable_and_hash_chained(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    v1 = commit_rows(cat, "ds", 10, 0)
    v1_files = {f: open(f, "rb").read() for f in open_version(cat, "ds@1").files}
    v1_manifest = cat.manifest_path("ds", 1).read_bytes()
    v1_table = open_version(cat, "ds@1").table()
    for v in range(2, 6):
        m = commit_rows(cat, "ds", 5, v * 100)
        assert m.parent == v - 1
        assert m.parent_sha256 == sha256_file(cat.manifest_path("ds", v - 1))
    assert cat.head("ds") == 5 and v1.rows == 10
    # time travel: version 1 reads back byte-identical after 4 more commits
    assert cat.manifest_path("ds", 1).read_bytes() == v1_manifest
    assert {f: open(f, "rb").read() for f in open_version(cat, "ds@1").files} == v1_files
    assert open_version(cat, "ds@1").table().equals(v1_table)
    assert open_version(cat, "ds").table().num_rows == 10 + 4 * 5


def test_shards_are_content_addressed(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    table = samples_to_table(make_samples(4))
    a, b = cat.write_shard("ds", table), cat.write_shard("ds", table)
    assert a.sha256 == b.sha256 and a.file == f"shards/{a.sha256}.parquet"
    assert sha256_file(cat.path("ds") / a.file) == a.sha256
    assert a.rows == 4 and a.rows_by_status == {"kept": 4}


def test_stale_parent_is_refused(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    commit_rows(cat, "ds", 3, 0)
    commit_rows(cat, "ds", 3, 10)
    with pytest.raises(CatalogError, match="head moved"):
        commit_rows(cat, "ds", 3, 20, expected_parent=1)
    assert cat.head("ds") == 2


def test_uncommitted_and_temporary_files_are_never_read(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    commit_rows(cat, "ds", 3, 0)
    # a crash after writing a shard but before the commit, plus a torn temp file
    with cat.lock("ds"):
        cat.write_shard("ds", samples_to_table(make_samples(7, start=50)))
    (cat.path("ds") / "shards" / ".tmp-deadbeef.parquet").write_bytes(b"PAR1 torn")
    (cat.path("ds") / "versions" / ".tmp-x-000002.json").write_text("{")
    v = open_version(cat, "ds")
    assert v.version == 1 and v.table().num_rows == 3
    assert cat.cleanup_temp() == 2
    assert commit_rows(cat, "ds", 1, 90).version == 2


def test_unknown_names_give_clear_errors(tmp_path):
    cat = Catalog(tmp_path)
    with pytest.raises(CatalogError, match="no dataset 'nope'"):
        cat.info("nope")
    with pytest.raises(CatalogError, match="invalid dataset name"):
        cat.path("../escape")
    cat.create("ds", "real")
    with pytest.raises(CatalogError, match="holds real data"):
        cat.create("ds", "synthetic")
    with pytest.raises(CatalogError, match="no versions"):
        cat.manifest("ds")


def test_parquet_has_hf_metadata(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    m = commit_rows(cat, "ds", 2, 0)
    schema = pq.read_schema(cat.path("ds") / m.shards[0].file)
    assert b"huggingface" in schema.metadata
    assert schema.field("image").type.names == ["bytes", "path"]
