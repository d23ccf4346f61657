"""Reading a dataset version at a git revision through DVC (real git, real dvc, local remote)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from catalog import Catalog, CatalogError, RestrictedError, open_version, samples_to_table
from catalog.dvc_io import IntegrityError, _read_shard, manifest_at, read_version_at
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples

DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "DO_NOT_TRACK": "1", "GIT_TERMINAL_PROMPT": "0"}
CATALOG = "synthgen-data/catalog"


def sh(cwd: Path, *args: str) -> None:
    subprocess.run(args, cwd=cwd, env=ENV, check=True, capture_output=True, text=True)


def cache_objects(repo: Path) -> set[str]:
    """md5s of every object in the local DVC cache ('.dir' listings included)."""
    root = repo / ".dvc" / "cache"
    return {p.parent.name + p.name for p in root.rglob("*") if p.is_file()}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def snapshot(repo: Path, msg: str, tag: str, names: tuple[str, ...] = ("ds",)) -> None:
    """What a user does after a catalog commit: dvc add, git commit + tag, dvc push."""
    sh(repo, DVC, "add", *(f"{CATALOG}/{n}" for n in names))
    sh(repo, "git", "add", *(f"{CATALOG}/{n}.dvc" for n in names), f"{CATALOG}/.gitignore")
    sh(repo, "git", "commit", "-q", "-m", msg)
    sh(repo, "git", "tag", tag)
    sh(repo, DVC, "push", "-q")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git + DVC project whose catalog holds ds@1 (tag v1) and ds@2 (tag v2), pushed to a local remote."""
    repo = tmp_path_factory.mktemp("project")
    remote = tmp_path_factory.mktemp("dvc-remote")
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "synthgen test")
    sh(repo, "git", "config", "user.email", "test@synthgen.invalid")
    sh(repo, "git", "config", "commit.gpgsign", "false")
    sh(repo, DVC, "init", "-q")
    sh(repo, DVC, "config", "core.analytics", "false")
    sh(repo, DVC, "remote", "add", "-d", "local", str(remote))
    sh(repo, "git", "add", ".dvc", ".dvcignore")
    sh(repo, "git", "commit", "-q", "-m", "dvc init")

    cat = Catalog(repo / CATALOG)
    cat.create("ds", "synthetic")
    t1 = samples_to_table(make_samples(10, start=0))
    with cat.lock("ds"):
        cat.commit("ds", [cat.write_shard("ds", t1)], message="v1")
    snapshot(repo, "ds v1", "v1")
    cache_v1 = cache_objects(repo)

    rows2 = make_samples(6, start=10)
    rows2[0].status = "dropped_duplicate"
    t2 = samples_to_table(rows2)
    with cat.lock("ds"):
        shard2 = cat.write_shard("ds", t2)
        cat.commit("ds", [shard2], message="v2")
    ds_dir = repo / CATALOG / "ds"
    new_files = {md5(ds_dir / shard2.file), md5(cat.manifest_path("ds", 2)), md5(ds_dir / "HEAD")}
    # ...and the id-index segment of the new shard with the version's segment list (catalog.id_index).
    from catalog.id_index import ids_json_path, read_ids_json

    new_files |= {md5(ids_json_path(cat, "ds", 2)), md5(ds_dir / read_ids_json(cat, "ds", 2)[-1]["file"])}
    expected_v2 = open_version(cat, "ds@2").table(status="all")
    snapshot(repo, "ds v2", "v2")
    cache_v2 = cache_objects(repo)

    # From here on nothing is local: every read must come from git + the DVC remote.
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / CATALOG / "ds")
    return {
        "repo": repo, "remote": remote, "t1": t1, "expected_v2": expected_v2,
        "cache_v1": cache_v1, "cache_v2": cache_v2, "new_files": new_files,
    }


def test_dvc_add_of_v2_stores_only_new_files(project):
    added = project["cache_v2"] - project["cache_v1"]
    # One new '.dir' listing for the directory output, plus exactly the new
    # shard, the new manifest and the moved HEAD: shard 1 is not stored again.
    assert {o for o in added if o.endswith(".dir")} and len([o for o in added if o.endswith(".dir")]) == 1
    assert {o for o in added if not o.endswith(".dir")} == project["new_files"]


def test_reads_each_revision_from_the_remote(project):
    repo, t1 = str(project["repo"]), project["t1"]
    assert not (project["repo"] / ".dvc" / "cache").exists()

    m1 = manifest_at(repo, "v1", "ds", CATALOG)
    assert m1.version == 1 and m1.rows == 10
    at_v1 = read_version_at(repo, "v1", "ds", CATALOG)
    assert at_v1.equals(t1)

    m2 = manifest_at(repo, "v2", "ds", CATALOG)
    assert m2.version == 2 and m2.parent == 1 and m2.rows == 16
    everything = read_version_at(repo, "v2", "ds", CATALOG, status="all")
    assert everything.equals(project["expected_v2"])
    kept = read_version_at(repo, "v2", "ds", CATALOG, columns=["sample_id"])
    assert kept.column_names == ["sample_id"] and kept.num_rows == 15
    assert "s00010" not in kept["sample_id"].to_pylist()  # the dropped row

    # A pinned version reads the same at a later revision (immutability).
    pinned = read_version_at(repo, "v2", "ds@1", CATALOG)
    assert pinned.equals(t1)
    two_cols = read_version_at(repo, "v1", "ds@1", CATALOG, columns=["sample_id", "label"])
    assert two_cols.equals(t1.select(["sample_id", "label"]))

    # Version 2 does not exist yet at v1.
    with pytest.raises(CatalogError, match="no version 2"):
        manifest_at(repo, "v1", "ds@2", CATALOG)

    # Reads did not repopulate a local cache, and without the remote they fail:
    # the rows above really came from the DVC remote.
    assert not (project["repo"] / ".dvc" / "cache").exists()
    moved = project["remote"].with_name(project["remote"].name + "-away")
    project["remote"].rename(moved)
    try:
        with pytest.raises(CatalogError, match="neither the local DVC cache nor the DVC remote"):
            read_version_at(repo, "v2", "ds@1", CATALOG)
    finally:
        moved.rename(project["remote"])


def test_shard_hash_mismatch_names_the_file():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/cat/ds/shards/abc.parquet", b"not the bytes the manifest promised")
    with pytest.raises(IntegrityError, match="shards/abc.parquet"):
        _read_shard(fs, "/cat/ds/shards/abc.parquet", "0" * 64, None)


def new_project(tmp_path: Path) -> Path:
    """An empty git + DVC project with a local DVC remote; ``.dvc`` staged for the first snapshot."""
    repo = tmp_path / "project"
    repo.mkdir()
    sh(repo, "git", "init", "-q")
    sh(repo, "git", "config", "user.name", "synthgen test")
    sh(repo, "git", "config", "user.email", "test@synthgen.invalid")
    sh(repo, "git", "config", "commit.gpgsign", "false")
    sh(repo, DVC, "init", "-q")
    sh(repo, DVC, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    sh(repo, "git", "add", ".dvc", ".dvcignore")
    return repo


def test_a_restricted_dataset_at_a_revision_needs_allow_restricted(tmp_path):
    repo = new_project(tmp_path)
    cat = Catalog(repo / CATALOG)
    cat.create("ds", "real", restricted=True)
    cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(4, origin="real")))])
    snapshot(repo, "restricted ds", "r1")
    with pytest.raises(RestrictedError, match="ds is restricted"):
        read_version_at(str(repo), "r1", "ds")
    assert read_version_at(str(repo), "r1", "ds", allow_restricted=True).num_rows == 4


def test_blocked_copies_of_a_restricted_set_at_a_revision_need_allow_restricted(tmp_path):
    """An open synthetic dataset's blocked copies of restricted real rows are withheld as in
    ``DatasetVersion.table``, judged against the catalog at that revision."""
    from tests.catalog.test_access_sources import copies_of, real_set

    repo = new_project(tmp_path)
    cat = Catalog(repo / CATALOG)
    private = real_set(cat, "private", restricted=True)
    public = real_set(cat, "pub", restricted=False, start=20)
    copies_of(cat, "gen", "private", private[:2])
    copies_of(cat, "gen_pub", "pub", public[:2])
    snapshot(repo, "real sets and their copies", "r1", ("private", "pub", "gen", "gen_pub"))
    at = str(repo)

    kept_only = read_version_at(at, "r1", "gen", CATALOG, status="all")
    assert kept_only["status"].to_pylist() == [KEPT, KEPT]  # the copies are withheld
    assert read_version_at(at, "r1", "gen", CATALOG, status="excluded", columns=["sample_id"]).num_rows == 0
    assert read_version_at(at, "r1", "gen", CATALOG, status=REAL_COPY, columns=["sample_id"]).num_rows == 0
    allowed = read_version_at(at, "r1", "gen", CATALOG, status="all", allow_restricted=True)
    assert allowed["status"].to_pylist().count(REAL_COPY) == 2
    assert read_version_at(at, "r1", "gen", CATALOG, status="excluded", columns=["sample_id"],
                           allow_restricted=True).column_names == ["sample_id"]

    # Copies of an open real set that holds the rows they copy, at that revision, are shown.
    shown = read_version_at(at, "r1", "gen_pub", CATALOG, status="all", columns=["sample_id", "status"])
    assert shown.column_names == ["sample_id", "status"] and shown["status"].to_pylist().count(REAL_COPY) == 2

    # A later revision without the open real set: its copies are withheld there (the set is absent at
    # that revision, though this working copy still has it), and still shown at r1.
    sh(repo, "git", "rm", "-q", "--cached", f"{CATALOG}/pub.dvc")
    sh(repo, "git", "commit", "-q", "-m", "pub untracked")
    sh(repo, "git", "tag", "r2")
    assert (repo / CATALOG / "pub" / "dataset.json").is_file()
    assert read_version_at(at, "r2", "gen_pub", CATALOG, status="all")["status"].to_pylist() == [KEPT, KEPT]
    assert read_version_at(at, "r1", "gen_pub", CATALOG, status="all").num_rows == 4


def test_verify_checks_a_revision_through_dvc(project):
    """The one verify (catalog.verify.verify_storage) reads a DVC revision as it reads a folder or a bucket."""
    from catalog.dvc_io import dvc_fs
    from catalog.storage import Storage
    from catalog.verify import verify_storage

    for rev, versions in (("v1", 1), ("v2", 2)):
        with dvc_fs(str(project["repo"]), rev) as fs:
            report = verify_storage(Storage.over(fs, CATALOG), "ds")
        assert report.ok, report.problems
        assert (report.manifests_checked, report.shards_checked, report.id_segments_checked) == (versions,) * 3
