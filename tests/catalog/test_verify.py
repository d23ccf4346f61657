import pytest

from catalog import Catalog, samples_to_table
from catalog.errors import IntegrityError
from catalog.layout import head_line
from catalog.verify import verify
from tests.conftest import make_samples


@pytest.fixture
def chain(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    for start in (0, 10, 20):
        with cat.lock("ds"):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(10, start=start)))])
    return cat


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_clean_catalog_verifies(chain):
    r = verify(chain, "ds")
    assert r.ok and r.manifests_checked == 3 and r.shards_checked == 3 and len(r.head_sha256) == 64


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_flipped_shard_byte_is_named(chain, which):
    shard = chain.path("ds") / chain.manifest("ds", 3).shards[which].file
    flip(shard, shard.stat().st_size // 2)
    r = verify(chain, "ds")
    assert not r.ok and any(shard.name in p for p in r.problems)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_flipped_manifest_byte_breaks_the_chain(chain, version):
    path = chain.manifest_path("ds", version)
    flip(path, 40)  # inside a JSON string: still parses, different bytes
    r = verify(chain, "ds")
    assert not r.ok and any(path.name in p for p in r.problems)


def test_missing_shard_is_reported(chain):
    shard = chain.path("ds") / chain.manifest("ds", 1).shards[0].file
    shard.unlink()
    assert any("missing" in p for p in verify(chain, "ds").problems)


def test_missing_shard_is_one_problem_naming_it(chain):
    shard = chain.path("ds") / chain.manifest("ds", 1).shards[0].file
    shard.unlink()
    assert verify(chain, "ds").problems == [f"{shard}: shard missing"]


def rewrite(cat, which, **fields):
    """Replace manifest ``which`` by a valid manifest with ``fields`` changed (as a careful forger would)."""
    from catalog import Manifest

    path = cat.manifest_path("ds", which)
    m = Manifest.model_validate_json(path.read_bytes()).model_copy(update=fields)
    path.write_bytes(m.to_bytes())
    return path


def test_a_rewritten_manifest_is_named_by_its_childs_parent_hash(chain):
    path = rewrite(chain, 2, message="nothing to see")
    assert verify(chain, "ds").problems == [  # the id index of version 2 was bound to the original bytes
        f"{chain.version_dir('ds', 2)}/ids.json: unreadable, or written for other manifest bytes",
        f"{path}: hash does not match the parent hash recorded in {chain.manifest_path('ds', 3)}"]


@pytest.mark.parametrize("fields, claim", [({"dataset": "other"}, "other@3"), ({"version": 4}, "ds@4"),
                                           ({"version": 2}, "ds@2")])
def test_a_manifest_claiming_another_dataset_or_version_is_reported(chain, fields, claim):
    path = rewrite(chain, 3, **fields)
    assert f"{path}: claims to be {claim}" in verify(chain, "ds").problems


@pytest.mark.parametrize("delta", [1, -1])
def test_a_row_total_that_is_not_the_sum_of_shard_rows_is_reported(chain, delta):
    path = rewrite(chain, 3, rows=chain.manifest("ds", 3).rows + delta)
    assert f"{path}: row total {30 + delta} != sum of shard rows" in verify(chain, "ds").problems


@pytest.mark.parametrize("stem", ["0" * 64, "f" * 64])
def test_a_shard_whose_file_name_is_not_its_hash_is_reported(chain, stem):
    import shutil

    ref = chain.manifest("ds", 3).shards[0]
    renamed = chain.path("ds") / "shards" / f"{stem}.parquet"
    shutil.copy(chain.path("ds") / ref.file, renamed)
    chain.commit("ds", [ref.model_copy(update={"file": f"shards/{stem}.parquet"})], keep_parent_shards=False)
    problems = verify(chain, "ds").problems
    assert problems == [f"{renamed}: content hash {ref.sha256[:16]}... does not match manifest {ref.sha256[:16]}..."]


def test_id_segments_are_checked_and_a_corrupt_one_is_named(chain):
    from catalog.id_index import read_ids_json

    entries = read_ids_json(chain, "ds", 3)
    r = verify(chain, "ds")
    assert r.ok and r.id_segments_checked == len({e["sha256"] for v in (1, 2, 3)
                                                  for e in read_ids_json(chain, "ds", v)})
    segment = chain.path("ds") / entries[-1]["file"]
    flip(segment, segment.stat().st_size // 2)
    assert any(p.startswith(f"{segment}: content hash") for p in verify(chain, "ds").problems)


def test_a_known_hash_listed_under_a_missing_file_is_reported(chain):
    ref = chain.manifest("ds", 3).shards[0]
    chain.commit("ds", [ref.model_copy(update={"file": "shards/elsewhere.parquet"})], keep_parent_shards=False)
    assert verify(chain, "ds").problems == [f"{chain.path('ds')}: a manifest lists shard 'shards/elsewhere.parquet', "
                                            "outside the dataset's shards/ folder"]


def test_a_head_that_seals_another_hash_is_reported(chain):
    (chain.path("ds") / "HEAD").write_text(f"3 {'0' * 64}\n")
    assert verify(chain, "ds").problems == [f"{chain.manifest_path('ds', 3)}: hash does not match the one sealed in HEAD"]


def test_a_shard_with_the_right_hash_but_another_row_count_is_reported(chain):
    ref = chain.manifest("ds", 3).shards[0]
    chain.commit("ds", [ref.model_copy(update={"rows": ref.rows + 1})], keep_parent_shards=False)
    shard = chain.path("ds") / ref.file
    assert verify(chain, "ds").problems == [f"{shard}: {ref.rows} rows, manifest says {ref.rows + 1}"]


@pytest.mark.parametrize("back", [1, 2])
def test_a_head_moved_back_over_published_versions_is_corrupt(chain, back):
    head = chain.root / "ds" / "HEAD"
    v = 3 - back
    head.write_bytes(head_line(v, chain.manifest_sha256("ds", v)))  # an older HEAD line copied back
    report = verify(Catalog(chain.root), "ds")
    assert not report.ok and any("moved back" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match="moved back"):
        Catalog(chain.root).manifest("ds")
    with pytest.raises(IntegrityError, match="moved back"):  # and the next commit deletes nothing
        Catalog(chain.root).commit("ds", [])
    assert (chain.root / "ds" / "versions" / "000003.json").exists()


def test_an_unfinished_commit_past_head_is_a_note_and_the_next_commit_replaces_it(chain):
    m = chain.manifest("ds")
    pending = m.model_copy(update={"version": 4, "parent": 3, "parent_sha256": chain.head_sha256("ds")})
    chain.manifest_path("ds", 4).write_bytes(pending.to_bytes())  # written, HEAD not moved (a killed commit)
    report = verify(Catalog(chain.root), "ds")
    assert report.ok and report.notes and "not published" in report.notes[0]
    assert Catalog(chain.root).commit("ds", []).version == 4
    assert [p.name[:6] for p in (chain.root / "ds" / "versions" / "unpublished").iterdir()] == ["000004"]  # kept


@pytest.mark.parametrize("content", [b"", b"3\n", b"3 abc\n", b"3 " + b"0" * 64 + b" extra\n", b"999999999 " + b"0" * 64])
def test_a_head_without_its_hash_or_malformed_is_corrupt(chain, content):
    (chain.root / "ds" / "HEAD").write_bytes(content)
    report = verify(Catalog(chain.root), "ds")
    assert not report.ok and report.manifests_checked <= 4, report.problems  # a missing link ends the walk
