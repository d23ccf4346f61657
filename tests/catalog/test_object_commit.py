"""A catalog whose root is an s3:// URL: the local commit protocol on a real S3-protocol server (moto, on loopback).

Real Parquet shards, real hashes, real conditional PUTs: commits, reads,
loaders and verify go to the bucket; nothing of the catalog is written to a
local folder except the read cache.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pyarrow.compute as pc
import pytest

from catalog import Catalog, CatalogError, RestrictedError, load, open_version, samples_to_table
from catalog.errors import HeadMoved, IntegrityError
from catalog.layout import head_key, manifest_key
from catalog.release import release
from catalog.verify import verify
from synthgen import failpoints
from tests.conftest import REPO, make_samples
from tests.s3_server import moto_s3


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture
def url(s3):
    return f"s3://{s3.bucket()}/team/catalog"


@pytest.fixture
def failpoint_env(monkeypatch):
    """Set $SYNTHGEN_FAILPOINT for one test, with the per-process hit counts reset."""
    failpoints._hits.clear()
    yield lambda value: monkeypatch.setenv(failpoints.ENV, value)
    failpoints._hits.clear()


def at_url(url: str, tmp_path, who: str = "a") -> Catalog:
    """A catalog at ``url`` with its own read cache (as on its own machine)."""
    return Catalog(url, cache=tmp_path / f"cache-{who}")


def rows_from(start: int, n: int = 6):
    """``n`` rows, the first one dropped (so status filters matter)."""
    rows = make_samples(n, start=start)
    rows[0].status = "dropped_duplicate"
    return samples_to_table(rows)


def test_commit_read_load_and_verify_at_a_url(url, tmp_path):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    for start in (0, 100):
        cat.commit("ds", cat.write_split("ds", rows_from(start)), message=f"from {start}")

    # A second machine (its own cache, its own Catalog) reads what the first committed.
    other = at_url(url, tmp_path, "b")
    assert other.names() == ["ds"] and other.head("ds") == 2
    v = open_version(other, "ds@2")
    kept = v.table(["sample_id", "status"])
    assert kept.num_rows == 10 and pc.all(pc.equal(kept["status"], "kept")).as_py()
    assert v.table(status="all").num_rows == 12
    assert open_version(other, "ds@1").table().num_rows == 5  # time travel
    assert load(other, ["ds@1", "ds"], origin="synthetic").num_rows == 15
    # The loaders read local files: the shards' verified copies in the reader's cache.
    assert all(str(tmp_path / "cache-b") in f for f in v.files)
    assert next(iter(v.to_torch()))[2] == kept["sample_id"][0].as_py()

    report = verify(other, "ds")
    assert report.ok, report.problems
    assert report.manifests_checked == 2
    # Shards went to the bucket, not to a folder: the writer's cache holds no leftover.
    assert not list((tmp_path / "cache-a").glob("*.parquet"))


def test_two_jobs_committing_at_once_both_land_in_commit_order(url, tmp_path):
    at_url(url, tmp_path).create("ds", "synthetic")
    per_job, start = 4, threading.Barrier(2)
    landed: dict[str, list[int]] = {"a": [], "b": []}

    def job(who: str, first: int) -> None:
        cat = at_url(url, tmp_path, who)  # its own client and cache, as a job on another machine
        shards = [cat.write_split("ds", rows_from(first + 10 * i)) for i in range(per_job)]
        start.wait()
        for refs in shards:
            landed[who].append(cat.commit("ds", refs, message=who).version)

    threads = [threading.Thread(target=job, args=(w, f)) for w, f in (("a", 0), ("b", 1000))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    cat = at_url(url, tmp_path, "reader")
    versions = cat.versions("ds")
    assert [m.version for m in versions] == list(range(1, 2 * per_job + 1))
    assert sorted(landed["a"] + landed["b"]) == [m.version for m in versions]
    # Each version is its parent plus what its own commit added: nobody's rows were lost.
    for m in versions:
        assert m.message == ("a" if m.version in landed["a"] else "b")
        parent = versions[m.version - 2].shards if m.version > 1 else []
        assert m.shards[:len(parent)] == parent
    assert open_version(cat, "ds").table().num_rows == 2 * per_job * 5
    assert verify(cat, "ds").ok


def test_a_commit_under_the_lock_lands_only_on_the_head_the_lock_saw(url, tmp_path):
    a, b = at_url(url, tmp_path, "a"), at_url(url, tmp_path, "b")
    a.create("ds", "synthetic")
    a.commit("ds", a.write_split("ds", rows_from(0)))
    with a.lock("ds"):
        refs = a.write_split("ds", rows_from(100))
        b.commit("ds", b.write_split("ds", rows_from(200)))  # another machine lands version 2 meanwhile
        with pytest.raises(HeadMoved, match="head moved from 1 to 2"):
            a.commit("ds", refs, keep_parent_shards=False)  # a takedown decided on version 1 must not drop 2's rows
    assert a.head("ds") == 2
    with pytest.raises(HeadMoved):
        a.commit("ds", refs, expected_parent=1)
    assert a.commit("ds", refs, expected_parent=2).version == 3


def test_staged_shards_are_uploaded_on_commit_and_left_to_their_folder_s_owner(url, tmp_path):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    staging = tmp_path / "staging"
    refs = cat.write_split("ds", rows_from(0), folder=staging)
    assert len(list(staging.glob("*.parquet"))) == 2
    m = cat.commit("ds", refs, expected_parent=None, adopt_from=staging)
    # Uploaded; the local files stay for whoever owns the folder (an ingest reads them on to store its
    # guard, then removes its staging; a job removes its staging after the commit).
    assert m.version == 1 and all(cat.storage.files.exists(f"ds/{r.file}") for r in refs)
    assert len(list(staging.glob("*.parquet"))) == 2 and not list((tmp_path / "cache-a").glob("*.parquet"))
    assert open_version(at_url(url, tmp_path, "b"), "ds").table().num_rows == 5


def test_a_writer_killed_before_head_moved_is_rolled_forward_by_the_next_commit(url, tmp_path, failpoint_env):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    cat.commit("ds", cat.write_split("ds", rows_from(0)))
    failpoint_env("manifest-written:raise")
    with pytest.raises(failpoints.InjectedFailure):
        cat.commit("ds", cat.write_split("ds", rows_from(100)), message="killed")
    # Readers still go by HEAD (version 1); the manifest of 2 is committed, and verify says so.
    assert at_url(url, tmp_path, "b").head("ds") == 1
    assert verify(cat, "ds").ok
    m = cat.commit("ds", cat.write_split("ds", rows_from(200)), message="next")
    assert (m.version, m.parent) == (3, 2)
    assert [v.message for v in cat.versions("ds")][1:] == ["killed", "next"]
    assert verify(cat, "ds").ok


def test_a_replaced_shard_object_is_refused_and_never_cached(url, tmp_path, s3):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    m = cat.commit("ds", cat.write_split("ds", rows_from(0)))
    other = cat.commit("ds", cat.write_split("ds", rows_from(100)), keep_parent_shards=False)
    # Substitute version 1's shard with another valid shard's bytes.
    files = cat.storage.files
    files.pipe_file(f"ds/{m.shards[0].file}", files.cat_file(f"ds/{other.shards[0].file}"))
    reader = at_url(url, tmp_path, "b")
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        open_version(reader, "ds@1").table()
    assert not list((tmp_path / "cache-b").glob("*.parquet"))
    assert not verify(reader, "ds").ok


def test_features_that_need_local_files_say_so(url, tmp_path):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    assert cat.location == url
    with pytest.raises(CatalogError, match="catalog is at a URL"):
        cat.path("ds")
    # Files derived from versions (indexes, guards, grids) are this machine's, beside its cache, one folder per URL.
    derived = cat.version_dir("ds", 1)
    assert derived.is_relative_to(tmp_path) and derived.parts[-3:] == ("ds", "versions", "000001")
    assert Catalog(url + "2", cache=tmp_path / "cache").version_dir("ds", 1) != derived
    assert cat.cleanup_temp() == 0 and cat.ensure_index("ds") is False


def test_bad_urls_are_clear_errors_before_anything_is_written(s3, tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog("s3://no-such-bucket/catalog", cache=tmp_path / "c")
    with pytest.raises(CatalogError, match="only s3:// URLs"):
        Catalog("memory://x/catalog", cache=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_the_same_dataset_keys_as_a_local_catalog(url, tmp_path):
    cat = at_url(url, tmp_path)
    cat.create("ds", "synthetic")
    m = cat.commit("ds", cat.write_split("ds", rows_from(0)))
    keys = cat.storage.keys("ds")
    assert {head_key("ds"), manifest_key("ds", 1), "ds/dataset.json"} <= keys
    assert {f"ds/{s.file}" for s in m.shards} <= keys


def test_a_commit_that_loses_the_race_for_its_version_builds_on_the_winner(url, tmp_path):
    a, b = at_url(url, tmp_path, "a"), at_url(url, tmp_path, "b")
    a.create("ds", "synthetic")
    a.commit("ds", a.write_split("ds", rows_from(0)))
    theirs, mine = a.write_split("ds", rows_from(100)), b.write_split("ds", rows_from(200))
    read_head = b.objects.head

    def head_then_a_commits(name):  # a lands version 2 just after b read HEAD = 1 (a real interleaving)
        got = read_head(name)
        if not a.versions("ds")[1:]:
            a.commit("ds", theirs, message="a")
        return got

    b.objects.head = head_then_a_commits
    m = b.commit("ds", mine, message="b")
    assert (m.version, m.parent) == (3, 2)  # b's version 2 lost the put-if-absent; it rebuilt on a's
    assert [v.message for v in b.versions("ds")][1:] == ["a", "b"]
    assert open_version(b, "ds").table().num_rows == 15 and verify(b, "ds").ok


COMMITTER = """
import sys
from catalog import Catalog, samples_to_table
from tests.conftest import make_samples
url, who, first, cache = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cat = Catalog(url, cache=cache)
shards = [cat.write_split("ds", samples_to_table(make_samples(5, start=first + 10 * i))) for i in range(3)]
sys.stdin.readline()  # both processes hold their shards: go
print(" ".join(str(cat.commit("ds", refs, message=who).version) for refs in shards))
"""


def test_two_processes_committing_at_once_both_land(url, tmp_path):
    at_url(url, tmp_path).create("ds", "synthetic")
    procs = [subprocess.Popen([sys.executable, "-c", COMMITTER, url, who, str(first), str(tmp_path / who)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for who, first in (("a", 0), ("b", 1000))]
    outs = [p.communicate("go\n", timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    landed = [list(map(int, out.split())) for out in outs]
    assert sorted(landed[0] + landed[1]) == list(range(1, 7))
    cat = at_url(url, tmp_path, "reader")
    assert [m.message for m in cat.versions("ds")] == ["a" if v in landed[0] else "b" for v in range(1, 7)]
    assert open_version(cat, "ds").table().num_rows == 6 * 5 and verify(cat, "ds").ok


def test_a_release_at_a_url_opens_the_dataset_for_every_reader(url, tmp_path):
    cat = at_url(url, tmp_path)
    cat.create("rs", "synthetic", restricted=True)
    cat.commit("rs", cat.write_split("rs", rows_from(0)))
    reader = at_url(url, tmp_path, "b")
    with pytest.raises(RestrictedError):
        open_version(reader, "rs").table()
    m = release(cat, "rs", "Ada (DPO)", "reviewed")
    assert (m.version, m.restricted) == (2, False)
    assert reader.info("rs")["restricted"] is False and open_version(reader, "rs").table().num_rows == 5
    assert verify(reader, "rs").ok
