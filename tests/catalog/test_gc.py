"""Shard files no manifest names: verify notes them, ``collect_garbage`` removes those past the grace period."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from catalog import Catalog, samples_to_table
from catalog.errors import IntegrityError
from catalog.gc import collect_garbage, unnamed_shards
from catalog.layout import staging_key
from catalog.manifest import sha256_bytes
from catalog.verify import verify
from flows.job.shard_drop import StoreDrop
from tests.conftest import make_samples
from tests.s3_server import moto_s3


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


def orphan(cat: Catalog, name: str) -> str:
    """A shard a commit uploaded and then died before its manifest: a valid file no manifest names."""
    buf = io.BytesIO()
    pq.write_table(samples_to_table(make_samples(3, start=900)), buf)
    key = f"{name}/shards/{sha256_bytes(buf.getvalue())}.parquet"
    cat.storage.files.pipe_file(key, buf.getvalue())
    return key


@pytest.mark.parametrize("where", ["folder", "url"])
def test_unnamed_shards_are_noted_then_collected(where, s3, tmp_path):
    cat = Catalog(tmp_path / "catalog") if where == "folder" else Catalog(f"s3://{s3.bucket()}/c", cache=tmp_path)
    cat.create("ds", "synthetic")
    cat.commit("ds", cat.write_split("ds", samples_to_table(make_samples(6))))
    key = orphan(cat, "ds")
    assert unnamed_shards(cat.storage, "ds") == [key]
    report = verify(cat, "ds")
    assert report.ok and any("synthgen gc ds" in n for n in report.notes)  # a note, not corruption

    young = collect_garbage(cat.storage, "ds")  # within the grace period: maybe a commit in progress
    assert young.kept_young == [key] and not young.removed and young.named == 1
    listed = collect_garbage(cat.storage, "ds", older_than_s=0, dry_run=True)
    assert listed.removed == [key] and cat.storage.files.exists(key)
    done = collect_garbage(cat.storage, "ds", older_than_s=0)
    assert done.removed == [key] and not cat.storage.files.exists(key)
    after = verify(cat, "ds")
    assert after.ok and not after.notes and after.shards_checked == 1  # the named shard is untouched


def test_an_unreadable_manifest_stops_gc_and_is_reported_by_verify(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    cat.create("ds", "synthetic")
    cat.commit("ds", cat.write_split("ds", samples_to_table(make_samples(6))))
    key = orphan(cat, "ds")
    (tmp_path / "catalog" / "ds" / "versions" / "000001.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="not a readable manifest"):
        collect_garbage(cat.storage, "ds", older_than_s=0)  # its shards would look unnamed: nothing removed
    assert cat.storage.files.exists(key)
    assert not verify(Catalog(tmp_path / "catalog"), "ds").ok  # a finding, not a crash


def test_a_job_staged_on_the_store_and_never_committed_is_collected_whole(s3, tmp_path):
    cat = Catalog(f"s3://{s3.bucket()}/c", cache=tmp_path)
    for name in ("ds", "other"):
        cat.create(name, "synthetic")
    rows = samples_to_table(make_samples(3))
    abandoned = StoreDrop(cat.storage.files, staging_key("ds", "job-a"))  # as a pool's workers leave them
    for shard in ("shard-00000", "shard-00001"):
        abandoned.put_rows(shard, rows)
        abandoned.put_record(shard, {"host": "gpu-1"})
    StoreDrop(cat.storage.files, staging_key("other", "job-b")).put_rows("shard-00000", rows)

    young = collect_garbage(cat.storage, "ds")  # maybe a job still running: kept
    assert young.staged == [staging_key("ds", "job-a")] and not young.staged_removed
    assert collect_garbage(cat.storage, "ds", older_than_s=0, dry_run=True).staged_removed == young.staged
    assert abandoned.rows("shard-00000") == 3
    done = collect_garbage(cat.storage, "ds", older_than_s=0)
    assert done.staged_removed == young.staged and abandoned.rows("shard-00000") is None
    assert not cat.storage.glob(f"{staging_key('ds', 'job-a')}/*")
    assert StoreDrop(cat.storage.files, staging_key("other", "job-b")).rows("shard-00000") == 3  # not this dataset's
