"""Restricted data stays restricted, paths stay inside their folder, readers trust only what verifies (issue 24).

Every case runs the real CLI on a copy of one seeded data folder, each
command its own process (forked after the CLI's imports: ``synthgen``
below): ``real`` (20 digits), ``synth`` (6 rows), a restricted ``secret``
(the same digits) and ``gen``, a synthetic dataset whose excluded rows are
blocked copies of ``secret``'s images.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import Catalog, ingest_folder, open_version, samples_to_table
from catalog.layout import head_line
from tests.conftest import make_samples
from tests.flows.cli_process import (
    MODEL_LIBRARIES,
    ForkedCli,
    assert_clean_error,
    seed_data,
)

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

BLOCKED = "blocked_real_copy"


@pytest.fixture(scope="module")
def synthgen():
    """``synthgen(data, *args)``: each command a process of its own, forked from one interpreter that imported the
    CLI and the model libraries (no command here starts a service or is signalled)."""
    cli = ForkedCli(preload=MODEL_LIBRARIES)
    yield cli
    cli.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    data, good = seed_data(root)
    cat = Catalog(data / "catalog")
    ingest_folder(cat, "secret", good, restricted=True)
    secret = open_version(cat, "secret", allow_restricted=True).table(["sample_id", "image"]).slice(0, 2)
    t = samples_to_table(make_samples(4, start=100), embedding_model="m")
    t = t.set_column(t.schema.get_field_index("status"), "status", pa.array(["kept", "kept", BLOCKED, BLOCKED]))
    t = t.set_column(t.schema.get_field_index("real_dataset"), "real_dataset", pa.array(["secret"] * 4))
    images = t["image"].to_pylist()[:2] + secret["image"].to_pylist()  # the blocked rows are the secret images
    t = t.set_column(t.schema.get_field_index("image"), "image", pa.array(images, t.schema.field("image").type))
    cat.create("gen", "synthetic")
    cat.commit("gen", cat.write_split("gen", t), embedding_model="m")
    return {"data": data, "good": good, "secret_ids": secret["sample_id"].to_pylist(),
            "secret_bytes": [i["bytes"] for i in secret["image"].to_pylist()]}


@pytest.fixture
def data(world, tmp_path) -> Path:
    dest = tmp_path / "data"
    shutil.copytree(world["data"], dest)
    return dest


def cat_of(data: Path) -> Catalog:
    return Catalog(data / "catalog")


def no_secret_bytes(world, folder: Path) -> None:
    """No file under ``folder`` (or ``folder`` itself, a file) holds a restricted image's bytes."""
    for f in [folder] if folder.is_file() else folder.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert not any(b in blob for b in world["secret_bytes"]), f


# -- 1. restricted is decided at creation and travels ------------------------------------------------
def test_ingest_restricted_into_an_unrestricted_dataset_is_refused(world, data, synthgen):
    proc = synthgen(data, "ingest", str(world["good"]), "--name", "real", "--restricted")
    assert_clean_error(proc, ["real", "not restricted"])
    assert cat_of(data).head("real") == 1  # nothing added


def test_mix_of_restricted_rows_into_an_unrestricted_mix_is_refused(data, synthgen):
    assert synthgen(data, "mix", "synth", "real", "--name", "m", "--ratio", "0.2").returncode == 0
    proc = synthgen(data, "mix", "synth", "secret", "--name", "m", "--ratio", "0.2", "--allow-restricted")
    assert_clean_error(proc, ["m", "not restricted"])
    assert cat_of(data).head("m") == 1
    assert synthgen(data, "export", "m", str(data.parent / "m.parquet")).returncode == 0  # still only open rows


def test_the_restricted_flag_is_in_the_hash_chain(data, synthgen):
    info = data / "catalog" / "secret" / "dataset.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "restricted": False}))
    assert_clean_error(synthgen(data, "load", "secret"), ["secret is restricted"])
    proc = synthgen(data, "verify", "secret")
    assert proc.returncode == 1 and "CORRUPT" in proc.stdout and "dataset.json" in " ".join(proc.stderr.split())


def test_blocked_copies_of_restricted_images_are_withheld(world, data, synthgen):
    proc = synthgen(data, "query", "SELECT count(*) + 1000 * count_if(status = 'blocked_real_copy') AS n FROM gen_all")
    assert proc.returncode == 0 and proc.stdout.split()[:2] == ["n", "2"], proc.stdout  # the 2 kept rows only
    out = data.parent / "out"  # an image folder: the copies are left out
    proc = synthgen(data, "export", "gen", str(out), "--status", "all")
    assert proc.returncode == 0 and len(list(out.rglob("*.png"))) == 2, proc.stdout + proc.stderr
    no_secret_bytes(world, out)
    whole = data.parent / "gen.parquet"  # a Parquet file: the same two rows
    assert synthgen(data, "export", "gen", str(whole), "--status", "all").returncode == 0
    assert pq.read_table(whole).num_rows == 2
    no_secret_bytes(world, whole)
    # load lists the shard files: the one holding the copies is refused
    assert_clean_error(synthgen(data, "load", "gen", "--status", "all"), ["blocked copies", "restricted"])
    shared = data.parent / "shared"
    assert_clean_error(synthgen(data, "push", "gen", str(shared)), ["blocked copies", "restricted"])
    if shared.exists():
        no_secret_bytes(world, shared)
    whole.unlink()
    proc = synthgen(data, "export", "gen", str(whole), "--status", "all", "--allow-restricted")
    assert proc.returncode == 0 and pq.read_table(whole).num_rows == 4


def test_audit_of_a_restricted_file_answers_as_for_an_unknown_one(world, data, tmp_path, synthgen):
    copy = next((world["good"]).rglob("*.png"))  # ingested into `real` (open) and `secret`
    shutil.rmtree(data / "catalog" / "real")  # so only the restricted set holds it
    proc = synthgen(data, "audit", str(copy))
    both = proc.stdout + proc.stderr
    assert "secret" not in both and "exact pixel match" not in both, both
    assert not any(sid in both for sid in world["secret_ids"])


def test_audit_of_a_restricted_id_tells_nothing(world, data, synthgen):
    shutil.rmtree(data / "catalog" / "real")  # it holds the same digits (same ids): only `secret` has them now
    hit = synthgen(data, "audit", world["secret_ids"][0])
    miss = synthgen(data, "audit", "real-no-such-id")
    assert_clean_error(hit, ["restricted"])
    assert hit.returncode == miss.returncode
    assert hit.stderr.replace(world["secret_ids"][0], "X") == miss.stderr.replace("real-no-such-id", "X")


# -- 2. names are checked where they enter -----------------------------------------------------------
def test_a_dataset_name_with_a_trailing_newline_is_refused(world, data, synthgen):
    assert_clean_error(synthgen(data, "ingest", str(world["good"]), "--name", "nl\n"), ["invalid dataset name"])
    assert not any(p.name.startswith("nl") for p in (data / "catalog").iterdir())


def test_a_dataset_name_that_shares_a_query_view_is_refused(world, data, synthgen):
    assert synthgen(data, "ingest", str(world["good"]), "--name", "my-set").returncode == 0
    assert_clean_error(synthgen(data, "ingest", str(world["good"]), "--name", "my.set"), ["my_set", "my-set"])
    assert not (data / "catalog" / "my.set").exists()


# -- 3. readers verify what they read ----------------------------------------------------------------
def test_a_rolled_back_head_is_detected_and_nothing_is_deleted(data, synthgen):
    head = data / "catalog" / "synth" / "HEAD"
    old = head.read_bytes()
    proc = synthgen(data, "takedown", "synth", "--where", "sample_id = 's00001'", "--reason", "legal")
    assert proc.returncode == 0, proc.stderr
    head.write_bytes(old)  # the takedown undone by copying the old HEAD back
    proc = synthgen(data, "verify", "synth")
    assert proc.returncode == 1 and "CORRUPT" in proc.stdout and "moved back" in " ".join(proc.stderr.split())
    assert_clean_error(synthgen(data, "load", "synth"), ["moved back"])
    proc = synthgen(data, "takedown", "synth", "--where", "sample_id = 's00002'", "--reason", "x")
    assert_clean_error(proc, ["moved back"])
    assert (data / "catalog" / "synth" / "versions" / "000002.json").exists()


@pytest.mark.parametrize("content", [b"", b"1\n", b"1 abc\n", b"100000000 " + b"a" * 64 + b"\n", b"100000000 abc"])
def test_a_malformed_head_is_corrupt_not_ok(data, content, synthgen):
    (data / "catalog" / "synth" / "HEAD").write_bytes(content)
    t0 = time.monotonic()
    proc = synthgen(data, "verify", "synth", timeout=60)
    assert proc.returncode == 1 and "CORRUPT" in proc.stdout, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 30
    assert_clean_error(synthgen(data, "load", "synth"), ["HEAD"])


def test_readers_refuse_a_manifest_verify_calls_corrupt(data, synthgen):
    manifest = data / "catalog" / "synth" / "versions" / "000001.json"
    manifest.write_text(manifest.read_text().replace('"message": ""', '"message": "x"'))
    assert synthgen(data, "verify", "synth").returncode == 1
    for args in (["load", "synth"], ["versions", "synth"], ["export", "synth", str(data.parent / "o.parquet")]):
        assert_clean_error(synthgen(data, *args), ["does not match"])
    assert not (data.parent / "o.parquet").exists()


def test_a_replaced_shard_is_refused(data, synthgen):
    cat = cat_of(data)
    ref = cat.manifest("synth").shards[0]
    path = cat.path("synth") / ref.file
    t = pq.read_table(path)
    pq.write_table(t.set_column(t.schema.get_field_index("label"), "label", pa.array([0] * t.num_rows, pa.int64())),
                   path)
    proc = synthgen(data, "load", "synth")
    assert_clean_error(proc, ["does not match", ref.sha256[:16]])


def test_a_shard_path_outside_the_dataset_is_refused_even_with_head_rehashed(data, synthgen):
    cat = cat_of(data)
    secret = cat.manifest("secret").shards[0]
    m = cat.manifest("synth")
    forged = m.model_copy(update={"shards": [secret.model_copy(update={"file": f"../secret/{secret.file}"})]})
    blob = forged.to_bytes()
    (data / "catalog" / "synth" / "versions" / "000001.json").write_bytes(blob)
    from catalog.manifest import sha256_bytes
    (data / "catalog" / "synth" / "HEAD").write_bytes(head_line(1, sha256_bytes(blob)))
    proc = synthgen(data, "load", "synth")
    assert_clean_error(proc, ["../secret/shards"])
    assert "real-" not in proc.stdout
    assert synthgen(data, "verify", "synth").returncode == 1


# -- 5. the query sandbox's temp directory -----------------------------------------------------------
@pytest.mark.parametrize("sql", ["SELECT * FROM read_text('.tmp/*')", "COPY (SELECT 1 AS x) TO '.tmp/y.csv'"])
def test_query_cannot_use_the_current_folder_s_tmp(data, tmp_path, sql, synthgen):
    cwd = tmp_path / "cwd"
    (cwd / ".tmp").mkdir(parents=True)
    (cwd / ".tmp" / "s.txt").write_text("top secret")
    proc = synthgen(data, "query", sql, cwd=cwd)
    assert_clean_error(proc, ["Permission"])
    assert "top secret" not in proc.stdout and sorted(p.name for p in (cwd / ".tmp").iterdir()) == ["s.txt"]
