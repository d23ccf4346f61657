import importlib
import subprocess
import sys

import pytest

from catalog import Catalog, audit, id_index, samples_to_table
from catalog.derive import takedown
from catalog.verify import verify
from tests.catalog.test_verify import flip
from tests.conftest import make_samples

audit_mod = importlib.import_module("catalog.audit")  # the package re-exports a function of the same name
SCAN = audit_mod._scan
HOLD_LOCK = """
import sys
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""
IDS = ["s00000", "s00012", "s00019", "s00031", "s00049", "missing", "a1b2c3d4e5f6a1b2c3d4e5f6"]


def commits(cat: Catalog, n: int, name: str = "ds") -> Catalog:
    cat.create(name, "synthetic")
    for start in range(0, 10 * n, 10):
        with cat.lock(name):
            cat.commit(name, [cat.write_shard(name, samples_to_table(make_samples(10, start=start)))])
    return cat


def reference(cat: Catalog, sample_id: str) -> list[tuple]:
    """The answer of the DuckDB scan that audit used before the index (and falls back to)."""
    out = []
    for name in cat.names():
        plan = audit_mod._Plan(audit_mod.shard_versions(audit_mod.read_manifests(cat, name)), None)
        out += as_tuples(SCAN(cat, name, plan, sample_id))
    return out


def as_tuples(records) -> list[tuple]:
    return [(r.dataset, repr(r.row), r.shard, r.versions) for r in records]


@pytest.fixture
def no_scan(monkeypatch):
    def fail(*args):
        raise AssertionError("audit scanned instead of using the id index")

    monkeypatch.setattr(audit_mod, "_scan", fail)


@pytest.fixture
def scans(monkeypatch):
    calls = []

    def spy(cat, name, plan, sample_id):
        calls.append(name)
        return SCAN(cat, name, plan, sample_id)

    monkeypatch.setattr(audit_mod, "_scan", spy)
    return calls


def segment_files(cat: Catalog, name: str = "ds") -> list:
    return sorted((cat.path(name) / "ids").glob("*.parquet"))


def test_each_commit_writes_one_segment_and_audit_reads_it(tmp_path, no_scan):
    cat = commits(Catalog(tmp_path), 3)
    assert len(segment_files(cat)) == 3
    assert [len(id_index.read_ids_json(cat, "ds", v)) for v in (1, 2, 3)] == [1, 2, 3]
    for sid in IDS:
        assert as_tuples(audit(cat, sid)) == reference(cat, sid)
    [rec] = audit(cat, "s00012")
    assert rec.versions == [2, 3] and rec.row["plan_index"] == 12


def test_rows_a_takedown_removed_are_found_in_older_versions(tmp_path, no_scan):
    cat = commits(Catalog(tmp_path), 3)
    takedown(cat, "ds", "sample_id = 's00012'", "test")
    [rec] = audit(cat, "s00012")
    assert rec.versions == [2, 3]
    kept = audit(cat, "s00011")  # in the old shard (versions 2, 3) and in its rewrite (version 4)
    assert sorted(r.versions for r in kept) == [[2, 3], [4]]
    for sid in IDS + ["s00011"]:
        assert as_tuples(audit(cat, sid)) == reference(cat, sid)
    assert verify(cat, "ds").ok


def test_missing_ids_find_nothing(tmp_path, no_scan):
    cat = commits(Catalog(tmp_path), 2)
    assert audit(cat, "missing") == [] and audit(cat, "s00020") == [] and audit(cat, "") == []


def test_compaction_merges_segments_and_keeps_answers(tmp_path, monkeypatch, no_scan):
    monkeypatch.setattr(id_index, "MAX_SEGMENTS", 2)
    cat = commits(Catalog(tmp_path), 5)
    lists = [id_index.read_ids_json(cat, "ds", v) for v in range(1, 6)]
    assert [len(x) for x in lists] == [1, 2, 1, 2, 1]  # 3 and 5 are merged; older versions keep theirs
    assert lists[4][0]["rows"] == 50
    for sid in IDS:
        assert as_tuples(audit(cat, sid)) == reference(cat, sid)
    assert verify(cat, "ds").ok


def test_missing_ids_json_is_rebuilt(tmp_path, scans):
    cat = commits(Catalog(tmp_path), 3)
    id_index.ids_json_path(cat, "ds", 3).unlink()  # as after a crash between manifest and ids.json
    assert as_tuples(audit(cat, "s00012")) == reference(cat, "s00012")
    assert scans == [] and id_index.read_ids_json(cat, "ds", 3) is not None


def test_missing_ids_json_with_the_lock_busy_scans(tmp_path, scans):
    cat = commits(Catalog(tmp_path), 3)
    id_index.ids_json_path(cat, "ds", 2).unlink()
    holder = subprocess.Popen(  # another process committing: audit must neither wait nor write
        [sys.executable, "-c", HOLD_LOCK, str(cat.path("ds") / ".lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        assert as_tuples(audit(cat, "s00012")) == reference(cat, "s00012")
    finally:
        holder.communicate(b"", timeout=60)
    assert scans == ["ds"] and not id_index.ids_json_path(cat, "ds", 2).exists()


def test_old_catalog_without_any_index_is_backfilled(tmp_path, scans):
    cat = commits(Catalog(tmp_path), 3)
    for path in segment_files(cat) + [id_index.ids_json_path(cat, "ds", v) for v in (1, 2, 3)]:
        path.unlink()
    for sid in IDS:
        assert as_tuples(audit(cat, sid)) == reference(cat, sid)
    assert scans == [] and len(segment_files(cat)) == 3 and verify(cat, "ds").ok


def test_corrupted_segment_is_not_trusted_and_verify_names_it(tmp_path, scans):
    cat = commits(Catalog(tmp_path), 3)
    segment = cat.path("ds") / id_index.read_ids_json(cat, "ds", 1)[0]["file"]
    flip(segment, 10)
    assert as_tuples(audit(cat, "s00003")) == reference(cat, "s00003")
    assert scans == ["ds"]
    report = verify(cat, "ds")
    assert not report.ok and any(segment.name in p for p in report.problems)
    assert report.id_segments_checked == 3


def test_a_failing_index_write_does_not_fail_the_commit(tmp_path, monkeypatch, scans):
    cat = commits(Catalog(tmp_path), 1)

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(id_index, "index_version", broken)
    with pytest.warns(UserWarning, match="sample-id index not written"), cat.lock("ds"):
        cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(10, start=10)))])
    assert cat.head("ds") == 2 and not id_index.ids_json_path(cat, "ds", 2).exists()
    assert as_tuples(audit(cat, "s00012")) == reference(cat, "s00012")  # ensure_index fails too: scan
    assert scans == ["ds"]


def test_several_datasets_come_back_in_shard_path_order(tmp_path, no_scan):
    cat = commits(commits(Catalog(tmp_path), 2, "ds"), 2, "ds-2")
    recs = audit(cat, "s00012")
    assert [r.dataset for r in recs] == ["ds-2", "ds"]  # as the single DuckDB scan ordered them
    assert [r.shard for r in recs] == sorted(r.shard for r in recs)


def test_audit_never_rewrites_an_id_list_that_does_not_check_out(tmp_path, scans):
    """An id list that does not match its version is evidence for verify: audit scans instead of replacing it."""
    cat = commits(Catalog(tmp_path), 2)
    listed = id_index.ids_json_path(cat, "ds", 2)
    listed.write_bytes(b'{"format": 1, "version": 2, "manifest_sha256": "0", "segments": []}')
    before = listed.read_bytes()
    assert as_tuples(audit(cat, "s00012")) == reference(cat, "s00012")
    assert listed.read_bytes() == before and scans == ["ds"]
