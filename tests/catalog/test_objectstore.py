"""A shared catalog on a real S3-protocol server (moto, on loopback) and on a local path, same code.

Real Parquet shards, real hashes, real conditional PUTs: the publish protocol
is checked against what the server actually does, including a publisher that
crashes half-way and two publishers racing for the same version.
"""

from __future__ import annotations

import threading

import pytest

from catalog import Catalog, open_version, samples_to_table
from catalog.dvc_io import IntegrityError
from catalog.id_index import read_ids_json
from catalog.layout import head_line, manifest_key
from catalog.objectstore import ObjectStore, RemoteError
from catalog.publish import ConflictError, pull, push
from catalog.shared_head import advance_head
from catalog.remote import RemoteCatalog, verify_remote
from catalog.verify import verify
from synthgen import failpoints
from tests.conftest import make_samples
from tests.s3_server import moto_s3


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture(params=["s3", "file"])
def shared(request, tmp_path):
    """(URL, storage options) of an empty shared catalog: a bucket on the S3 server, or a file:// folder."""
    if request.param == "file":
        return (tmp_path / "shared").as_uri(), None
    server = request.getfixturevalue("s3")
    return f"s3://{server.bucket()}/team/catalog", server.options


@pytest.fixture
def failpoint_env(monkeypatch):
    """Set $SYNTHGEN_FAILPOINT for one test, with the per-process hit counts reset."""
    failpoints._hits.clear()

    def arm(value: str) -> None:
        monkeypatch.setenv(failpoints.ENV, value)

    yield arm
    failpoints._hits.clear()


def commit_rows(cat: Catalog, start: int, n: int = 8, name: str = "ds") -> None:
    """One version adding ``n`` real rows (one dropped, so status filters matter)."""
    cat.create(name, "synthetic")
    rows = make_samples(n, start=start)
    rows[0].status = "dropped_duplicate"
    with cat.lock(name):
        cat.commit(name, [cat.write_shard(name, samples_to_table(rows))], message=f"rows from {start}")


def local_catalog(tmp_path, folder: str, *starts: int) -> Catalog:
    cat = Catalog(tmp_path / folder)
    for start in starts:
        commit_rows(cat, start)
    return cat


def rivals(tmp_path, url: str, options) -> tuple[Catalog, Catalog]:
    """Two publishers that share version 1 (a pushed it, b pulled it) and each committed their own version 2."""
    a = local_catalog(tmp_path, "a", 0)
    push(a, "ds", url, options)
    b = Catalog(tmp_path / "b")
    pull(url, "ds", b, options)
    commit_rows(a, 10)
    commit_rows(b, 50)
    return a, b


def ids_of(table) -> list[str]:
    return table["sample_id"].to_pylist()


def test_store_primitives_are_conditional(shared):
    store = ObjectStore(*shared)
    store.check(create=True)
    store.put("ds/versions/000001.json", b"one", create=True)
    with pytest.raises(FileExistsError):
        store.put("ds/versions/000001.json", b"other", create=True)
    assert store.read("ds/versions/000001.json") == b"one" and store.read("ds/nothing") is None
    a, b, c, d = (head_line(v, x * 64) for v, x in ((1, "a"), (1, "b"), (2, "c"), (3, "d")))  # HEAD's real format
    assert store.swap("ds/HEAD", None, a)
    assert not store.swap("ds/HEAD", None, b)  # must be absent: it is not
    data, tag = store.read_tagged("ds/HEAD")
    assert data == a and store.swap("ds/HEAD", tag, c)
    assert not store.swap("ds/HEAD", tag, d)  # stale tag: another writer moved it
    advance_head(store, "ds", 1, "a" * 64)  # never backwards
    assert store.read("ds/HEAD") == c


def test_push_pull_round_trip_and_increments(shared, tmp_path):
    url, options = shared
    cat = local_catalog(tmp_path, "a", 0, 10)
    first = push(cat, "ds", url, options)
    assert first.versions == [1, 2] and first.head == 2 and first.objects == 4  # 2 shards + 2 id segments
    assert push(cat, "ds", url, options).versions == []

    remote = RemoteCatalog(url, options)
    assert remote.names() == ["ds"] and remote.head("ds") == (2, cat.head_sha256("ds"))
    assert [m.version for m in remote.versions("ds")] == [1, 2]
    for ref in ("ds@1", "ds"):
        local = open_version(cat, ref)
        assert remote.open(ref).table().equals(local.table())
        assert remote.open(ref).table(["sample_id", "label"], status="all").equals(
            local.table(["sample_id", "label"], status="all"))
        assert remote.open(ref).table(origin="real").num_rows == 0
    assert verify_remote(remote, "ds").ok

    copy = Catalog(tmp_path / "b")
    assert pull(url, "ds", copy, options).versions == [1, 2]
    assert verify(copy, "ds").ok and copy.head_sha256("ds") == cat.head_sha256("ds")
    assert copy.manifest_path("ds", 2).read_bytes() == cat.manifest_path("ds", 2).read_bytes()
    assert (copy.version_dir("ds", 2) / "ids.json").read_bytes() == (cat.version_dir("ds", 2) / "ids.json").read_bytes()
    assert pull(url, "ds", copy, options).note == "up to date"

    commit_rows(cat, 20)
    third = push(cat, "ds", url, options)
    assert third.versions == [3] and third.objects == 2  # only the new shard and its id segment
    again = pull(url, "ds", copy, options)
    assert again.versions == [3] and again.objects == 2
    assert open_version(copy, "ds").table().equals(open_version(cat, "ds").table())


@pytest.mark.parametrize("point", ["push-objects", "push-manifests"])
def test_crashed_push_leaves_the_previous_version_and_a_re_push_completes(shared, tmp_path, failpoint_env, point):
    url, options = shared
    cat = local_catalog(tmp_path, "a", 0)
    push(cat, "ds", url, options)
    commit_rows(cat, 10)
    failpoint_env(f"{point}:raise")
    with pytest.raises(failpoints.InjectedFailure):
        push(cat, "ds", url, options)

    # The new shard is on the store (and, at the later point, the manifest): readers still see version 1.
    store = ObjectStore(*shared)
    assert (store.read(manifest_key("ds", 2)) is None) == (point == "push-objects")
    remote = RemoteCatalog(url, options)
    assert remote.head("ds")[0] == 1
    assert remote.open("ds").table().equals(open_version(cat, "ds@1").table())
    assert verify_remote(remote, "ds").ok
    reader = Catalog(tmp_path / "reader")
    assert pull(url, "ds", reader, options).head == 1

    assert push(cat, "ds", url, options).versions == [2]  # the same command again finishes the job
    assert remote.open("ds").table().equals(open_version(cat, "ds").table())
    assert store.read("ds/versions/000002/ids.json") == (cat.version_dir("ds", 2) / "ids.json").read_bytes()
    assert verify_remote(remote, "ds").ok


def test_a_killed_publishers_committed_version_is_rolled_forward_by_the_next_push(shared, tmp_path, failpoint_env):
    url, options = shared
    a, b = rivals(tmp_path, url, options)
    failpoint_env("push-manifests:raise")
    with pytest.raises(failpoints.InjectedFailure):
        push(a, "ds", url, options)  # a's version 2 committed (manifest created), HEAD not moved
    failpoint_env("")

    with pytest.raises(ConflictError, match="ds@2 differs from the local ds@2: the histories diverged"):
        push(b, "ds", url, options)
    remote = RemoteCatalog(url, options)
    assert remote.head("ds") == (2, a.head_sha256("ds"))  # b's push moved HEAD over a's commit
    with pytest.raises(ConflictError, match="diverged"):
        pull(url, "ds", b, options)


def test_two_publishers_of_one_version_exactly_one_wins_and_the_loser_rebases(shared, tmp_path, monkeypatch):
    url, options = shared
    a, b = rivals(tmp_path, url, options)

    # Both have uploaded their shards before either creates manifest 2: a true race for the key.
    barrier = threading.Barrier(2, timeout=30)
    monkeypatch.setattr("catalog.publish.failpoint", lambda name, detail="": name == "push-objects" and barrier.wait())
    outcome: dict[str, object] = {}

    def publish(tag: str, cat: Catalog) -> None:
        try:
            outcome[tag] = push(cat, "ds", url, options)
        except ConflictError as exc:
            outcome[tag] = exc

    threads = [threading.Thread(target=publish, args=(t, c)) for t, c in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    monkeypatch.setattr("catalog.publish.failpoint", failpoints.failpoint)
    losers = [t for t, r in outcome.items() if isinstance(r, ConflictError)]
    assert len(outcome) == 2 and len(losers) == 1, outcome
    loser, winner = (b, a) if losers == ["b"] else (a, b)
    message = str(outcome[losers[0]])
    assert "published by another publisher" in message and "Pull it into a fresh catalog" in message
    remote = RemoteCatalog(url, options)
    assert remote.head("ds") == (2, winner.head_sha256("ds"))
    assert remote.open("ds").table().equals(open_version(winner, "ds").table())
    assert verify_remote(remote, "ds").ok

    # The loser's way on: a fresh pull, its rows committed on top, pushed.
    rebased = Catalog(tmp_path / "rebased")
    pull(url, "ds", rebased, options)
    mine = open_version(loser, "ds@2")
    with rebased.lock("ds"):
        rebased.commit("ds", [rebased.write_shard("ds", mine.table(status="all"))])
    assert push(rebased, "ds", url, options).versions == [3]
    everything = set(ids_of(remote.open("ds").table(status="all")))
    theirs = set(ids_of(open_version(winner, "ds").table(status="all")))
    assert everything == theirs | set(ids_of(mine.table(status="all")))


def test_readers_during_publishes_see_whole_versions_only(s3, tmp_path):
    url, options = f"s3://{s3.bucket()}/c", s3.options
    cat = local_catalog(tmp_path, "a", 0)
    push(cat, "ds", url, options)
    remote = RemoteCatalog(url, options)
    seen: list[tuple[int, list[str]]] = []
    done = threading.Event()

    def read_loop() -> None:
        while not done.is_set() and len(seen) < 500:
            v = remote.open("ds")  # HEAD, then the manifest chain it seals, then hash-checked shards
            seen.append((v.manifest.version, ids_of(v.table(status="all"))))

    reader = threading.Thread(target=read_loop)
    reader.start()
    try:
        for start in (10, 20, 30):
            commit_rows(cat, start)
            push(cat, "ds", url, options)
    finally:
        done.set()
        reader.join(120)
    assert seen and {v for v, _ in seen} <= {1, 2, 3, 4}
    for version, ids in seen:
        assert ids == ids_of(open_version(cat, f"ds@{version}").table(status="all"))


def test_tampered_objects_are_refused_by_reads_pulls_and_verify(s3, tmp_path):
    bucket = s3.bucket()
    url, options = f"s3://{bucket}/c", s3.options
    cat = local_catalog(tmp_path, "a", 0, 10)
    push(cat, "ds", url, options)
    shard = cat.manifest("ds", 2).shards[-1].file
    s3.client().put_object(Bucket=bucket, Key=f"c/ds/{shard}", Body=b"not the promised bytes")

    remote = RemoteCatalog(url, options)
    assert remote.open("ds@1").table().num_rows == 7  # version 1 does not use that shard
    with pytest.raises(IntegrityError, match=shard.split("/")[1]):
        remote.open("ds").table()
    copy = Catalog(tmp_path / "copy")
    with pytest.raises(IntegrityError):
        pull(url, "ds", copy, options)
    # nothing half-pulled is visible (the shard is read first to see whether it may come: then nothing is written)
    assert not copy.exists("ds") or copy.head("ds") is None
    report = verify_remote(remote, "ds")
    assert not report.ok and any(shard.split("/")[1] in p for p in report.problems)

    key = "c/ds/versions/000001.json"
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read().replace(b"rows from 0", b"rows from 9")
    s3.client().put_object(Bucket=bucket, Key=key, Body=body)
    with pytest.raises(IntegrityError, match="000001.json"):
        remote.open("ds@1")
    assert any("000001.json" in p for p in verify_remote(remote, "ds").problems)


def test_verify_reports_the_same_problems_for_a_local_catalog_and_its_copy_on_s3(s3, tmp_path):
    """One verify: the same tampering in a local catalog and in its pushed copy is reported alike."""
    bucket = s3.bucket()
    url = f"s3://{bucket}/same"
    cat = local_catalog(tmp_path, "a", 0, 10)
    push(cat, "ds", url, s3.options)
    segment = read_ids_json(cat, "ds", 2)[-1]["file"]
    manifest = manifest_key("ds", 1)
    tampered = {
        f"ds/{cat.manifest('ds', 2).shards[-1].file}": b"not the promised bytes",
        f"ds/{segment}": b"nor these",
        manifest: (cat.root / manifest).read_bytes().replace(b"rows from 0", b"rows from 9"),
    }
    for key, body in tampered.items():
        (cat.root / key).write_bytes(body)
        s3.client().put_object(Bucket=bucket, Key=f"same/{key}", Body=body)
    local = verify(cat, "ds").problems
    remote = verify_remote(RemoteCatalog(url, s3.options), "ds").problems
    assert len(local) == 4  # shard, segment, version 1's stale id list, the broken link to version 2
    assert [p.replace(str(cat.root), url) for p in local] == remote


def test_clear_errors_for_bad_urls_missing_buckets_and_unreachable_endpoints(s3, tmp_path):
    with pytest.raises(RemoteError, match="bucket 'no-such-bucket' does not exist"):
        RemoteCatalog("s3://no-such-bucket/c", s3.options)
    quick = {"endpoint_url": "http://127.0.0.1:1", "config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(RemoteError, match="cannot reach http://127.0.0.1:1"):
        push(local_catalog(tmp_path, "a", 0), "ds", "s3://any-bucket/c", quick)
    with pytest.raises(RemoteError, match="no shared catalog"):
        pull(tmp_path / "nowhere", "ds", Catalog(tmp_path / "b"))
    with pytest.raises(RemoteError, match="only s3:// URLs and local paths"):
        ObjectStore("memory://x")


def test_a_server_that_ignores_put_if_absent_is_refused_before_publishing(s3, monkeypatch):
    store = ObjectStore(f"s3://{s3.bucket()}/c", s3.options)
    store.check(create=True)  # moto honours If-None-Match
    monkeypatch.setattr(store, "put", lambda key, data, create=False: ObjectStore.put(store, key, data))
    with pytest.raises(RemoteError, match="ignores conditional writes"):
        store.check(create=True)
    assert store.keys(".synthgen-probe") == set()  # the probe cleans up after itself


def test_push_refuses_a_diverged_or_foreign_history(shared, tmp_path):
    url, options = shared
    a = local_catalog(tmp_path, "a", 0)
    push(a, "ds", url, options)
    behind = Catalog(tmp_path / "behind")
    pull(url, "ds", behind, options)
    commit_rows(a, 10)
    push(a, "ds", url, options)
    stale = push(behind, "ds", url, options)
    assert stale.versions == [] and "pull to update" in stale.note
    with pytest.raises(ConflictError, match="not in the local history"):
        push(local_catalog(tmp_path, "b", 99), "ds", url, options)  # one version: shorter and different
    with pytest.raises(ConflictError, match="diverged"):
        push(local_catalog(tmp_path, "c", 99, 98, 97), "ds", url, options)
    real = Catalog(tmp_path / "d")
    real.create("ds", "real")
    with pytest.raises(ConflictError, match="holds real data"):
        pull(url, "ds", real, options)


def test_pull_refuses_keys_that_climb_out_of_the_catalog(s3, tmp_path):
    bucket = s3.bucket()
    url, options = f"s3://{bucket}/c", s3.options
    push(local_catalog(tmp_path, "a", 0), "ds", url, options)
    s3.client().put_object(Bucket=bucket, Key="c/ds/versions/000001/../../../../escaped.txt", Body=b"x")
    with pytest.raises(IntegrityError, match="outside"):
        pull(url, "ds", Catalog(tmp_path / "copy" / "catalog"), options)
    assert not list(tmp_path.rglob("escaped.txt"))
