"""``--catalog URL`` / ``$SYNTHGEN_CATALOG``: the commands that read and write a catalog on an S3 server (moto).

Real processes, as a user runs them; the server's endpoint comes from
``$AWS_ENDPOINT_URL`` as for any AWS client.
"""

from __future__ import annotations

import json
import os

import pytest

from catalog import Catalog, open_version, samples_to_table
from catalog.search import search
from tests.conftest import make_samples
from tests.flows.cli_process import assert_clean_error, synthgen
from tests.s3_server import moto_s3

pytestmark = pytest.mark.long  # real processes against an S3 server: started first (tests/conftest.py)


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture
def url(s3, tmp_path):
    """A catalog in a new bucket holding `ds` at version 2 (5 + 5 kept rows)."""
    url = f"s3://{s3.bucket()}/team/catalog"
    cat = Catalog(url, cache=tmp_path / "seed-cache")
    cat.create("ds", "synthetic")
    for start in (0, 100):
        rows = make_samples(6, start=start)
        rows[0].status = "dropped_duplicate"
        cat.commit("ds", cat.write_split("ds", samples_to_table(rows)))
    return url


def aws_env() -> dict:
    """The moto server's endpoint and dummy credentials (set by ``moto_s3``) for a child process."""
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def test_reading_verifying_and_taking_down_at_a_url(url, tmp_path):
    data = tmp_path / "data"
    listed = synthgen(data, "--catalog", url, "datasets", "--json", env=aws_env())
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"catalog": url, "datasets": [
        {"name": "ds", "origin": "synthetic", "head": 2, "rows": 12, "kept": 10, "restricted": False}]}
    # The same catalog named by the environment instead of the option.
    env = {**aws_env(), "SYNTHGEN_CATALOG": url}
    loaded = synthgen(data, "load", "ds@2", env=env)
    assert loaded.returncode == 0 and "ds@2: 10 rows (kept)" in loaded.stdout, loaded.stderr
    assert str(data / "cache") in loaded.stdout  # rows are read from verified local copies
    gone = synthgen(data, "takedown", "ds", "--where", "sample_id = 's00101'", "--reason", "test", env=env)
    assert gone.returncode == 0, gone.stderr
    checked = synthgen(data, "verify", "ds", "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["ok"] and report["version"] == 3 and report["manifests_checked"] == 3
    assert not (data / "catalog").exists()  # nothing of the catalog in the data folder


def test_commands_that_copy_to_or_from_a_local_catalog_are_refused_before_anything_is_written(url, tmp_path):
    data = tmp_path / "data"
    for args in (["push", url, "ds"], ["pull", url, "ds"], ["demo"]):
        proc = synthgen(data, "--catalog", url, *args, env=aws_env())
        assert_clean_error(proc, [f"`synthgen {args[0]}`", "needs a local catalog", url])
    assert not data.exists()


def test_card_and_mix_at_a_url(url, tmp_path):
    data = tmp_path / "data"
    Catalog(url, cache=tmp_path / "seed-cache").create("real", "real")
    real = Catalog(url, cache=tmp_path / "seed-cache")
    real.commit("real", real.write_split("real", samples_to_table(make_samples(6, origin="real", start=500))))
    mixed = synthgen(data, "--catalog", url, "mix", "ds@2", "real@1", "--name", "mx", "--ratio", "0.5", env=aws_env())
    assert mixed.returncode == 0 and "mx@1: mix: 6 real + 6 synthetic" in mixed.stdout, mixed.stderr
    card = synthgen(data, "--catalog", url, "card", "mx", "--write", env=aws_env())
    assert card.returncode == 0 and "# mx@1" in card.stdout, card.stderr
    written = list((data / "derived").rglob("mx/versions/000001/card.md"))  # on this machine, like indexes
    assert len(written) == 1 and f"wrote {written[0]}" in card.stdout
    text = written[0].read_text()
    assert text.startswith("# mx@1") and f"Catalog('{url}')" in text  # its "load it" snippet names the URL


def test_an_unreachable_bucket_or_an_empty_value_is_one_clear_error(s3, tmp_path):
    data = tmp_path / "data"
    assert_clean_error(synthgen(data, "--catalog", "s3://no-such-bucket/c", "datasets", env=aws_env()),
                       ["bucket 'no-such-bucket' does not exist"])
    assert_clean_error(synthgen(data, "--catalog", " ", "datasets", env=aws_env()), ["--catalog is empty"])


def test_gc_removes_shard_objects_no_manifest_names(url, tmp_path):
    cat = Catalog(url, cache=tmp_path / "writer-cache")
    lost = cat.write_shard("ds", samples_to_table(make_samples(2, start=500)))  # uploaded; its commit died
    gone = synthgen(tmp_path / "data", "--catalog", url, "gc", "ds", "--older-than", "0", "--json", env=aws_env())
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["removed"] == [f"ds/{lost.file}"]
    assert not cat.storage.files.exists(f"ds/{lost.file}") and cat.versions("ds")[-1].version == 2


def test_an_ingest_at_a_url_stores_what_a_local_ingest_does(url, tmp_path, real_digits_dir, embedder):
    data = tmp_path / "data"
    remote = synthgen(data, "--catalog", url, "ingest", str(real_digits_dir), "--name", "real", env=aws_env())
    assert remote.returncode == 0, remote.stderr
    local = synthgen(tmp_path / "local", "ingest", str(real_digits_dir), "--name", "real")
    assert local.returncode == 0, local.stderr
    at_url = Catalog(url, cache=tmp_path / "reader")
    # Content-addressed shards: the same files byte for byte, the same rows.
    assert [s.sha256 for s in at_url.manifest("real").shards] == \
        [s.sha256 for s in Catalog(tmp_path / "local" / "catalog").manifest("real").shards]
    checked = synthgen(data, "--catalog", url, "verify", "real", "--json", env=aws_env())
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout
    assert not list(data.rglob("*.parquet"))  # staging removed; nothing of the catalog in the data folder
    assert list((data / "derived").rglob("guard/index.faiss"))  # the guard, kept on this machine
    found = synthgen(data, "--catalog", url, "search", "real", "a handwritten zero", "--k", "3", "--where", "label = 0",
                     env=aws_env())
    assert found.returncode == 0, found.stderr
    # The local catalog's rows, searched in this process: the same three hits, in the same order.
    local_hits = search(open_version(Catalog(tmp_path / "local" / "catalog"), "real"),
                        embedder.embed_texts(["a handwritten zero"])[0], 3, "label = 0")
    assert [line.split()[0] for line in found.stdout.splitlines()] == [sid for sid, _ in local_hits]


def test_audit_and_rededup_at_a_url(url, tmp_path):
    data = tmp_path / "data"
    found = synthgen(data, "--catalog", url, "audit", "s00101", "--json", env=aws_env())
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    assert report["sample_id"] == "s00101" and report["records"]
    assert all(r["dataset"] == "ds" and r["row"]["sample_id"] == "s00101" for r in report["records"])
    again = synthgen(data, "--catalog", url, "rededup", "ds", "--threshold", "0.5", env=aws_env())
    assert again.returncode == 0, again.stderr
    m = Catalog(url, cache=tmp_path / "reader").manifest("ds")
    assert m.version == 3 and m.parent == 2 and m.rows == 12
