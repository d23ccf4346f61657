"""Shared storage as a user meets it: push/pull/remote-* commands against a real S3 server on
loopback (moto), a push SIGKILLed half-way in a real subprocess, and MLflow artifacts on S3."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version, samples_to_table
from catalog.remote import RemoteCatalog
from flows.cli.app import app
from tests.conftest import REPO, make_samples
from tests.flows.job.test_rededup import guarded
from tests.s3_server import moto_s3

runner = CliRunner()


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:  # also sets $AWS_ENDPOINT_URL, which the commands below rely on
        yield server


def cli(data, *args):
    return runner.invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)


def data_dir_with_versions(tmp_path, folder: str, *starts: int):
    """A data folder whose catalog holds dataset 'ds' with one version per start."""
    data = tmp_path / folder
    cat = Catalog(data / "catalog")
    cat.create("ds", "synthetic")
    for start in starts:
        with cat.lock("ds"):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(6, start=start)))])
    return data, cat


def test_push_pull_and_remote_reads_through_the_cli(s3, tmp_path):
    url = f"s3://{s3.bucket()}/catalog"
    a, cat = data_dir_with_versions(tmp_path, "a", 0, 6)
    r = cli(a, "push", "ds", url)
    assert r.exit_code == 0 and f"pushed ds@1..2 to {url}" in r.output and "shared head is 2" in r.output
    assert "nothing to push" in cli(a, "push", "ds", url, "--endpoint-url", s3.endpoint).output

    assert "ds  head 2" in cli(a, "remote-versions", url).output
    listing = cli(a, "remote-versions", url, "ds").output
    assert "version" in listing and "12" in listing  # version 2 holds 12 rows
    saved = tmp_path / "rows.parquet"
    shown = cli(a, "remote-load", url, "ds@1", "--out", str(saved))
    assert shown.exit_code == 0 and "ds@1 at" in shown.output and "6 rows" in shown.output and saved.is_file()
    assert pq.read_table(saved).equals(open_version(cat, "ds@1").table())

    b = tmp_path / "b"
    pulled = cli(b, "pull", url, "ds")
    assert pulled.exit_code == 0 and "pulled ds@1..2" in pulled.output
    assert Catalog(b / "catalog").head_sha256("ds") == cat.head_sha256("ds")
    verified = cli(b, "remote-verify", url, "ds")
    assert verified.exit_code == 0 and "OK" in verified.output


def test_cli_errors_are_one_clear_line(s3, tmp_path, monkeypatch):
    a, _ = data_dir_with_versions(tmp_path, "a", 0)
    r = cli(a, "push", "ds", "s3://no-such-bucket/catalog")
    assert r.exit_code == 2 and "bucket 'no-such-bucket' does not exist" in r.output
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore: fail fast instead of retrying a dead port
    r = cli(a, "pull", "s3://any/catalog", "ds", "--endpoint-url", "http://127.0.0.1:1")
    assert r.exit_code == 2 and "cannot reach http://127.0.0.1:1" in r.output

    url = f"s3://{s3.bucket()}/catalog"
    cli(a, "push", "ds", url)
    other, _ = data_dir_with_versions(tmp_path, "other", 100, 200)
    r = cli(other, "push", "ds", url)
    assert r.exit_code == 2 and "diverged" in r.output
    assert cli(a, "remote-load", url, "nope").exit_code == 2


def test_restricted_data_is_not_published_or_written_out_without_the_flag(s3, tmp_path):
    url = f"s3://{s3.bucket()}/restricted"
    data = tmp_path / "r"
    cat = Catalog(data / "catalog")
    cat.create("private", "real", restricted=True)
    cat.commit("private", [cat.write_shard("private", samples_to_table(make_samples(4, origin="real")))])
    r = cli(data, "push", "private", url)
    assert r.exit_code == 2 and "restricted" in r.output and not RemoteCatalog(url).names()
    assert cli(data, "push", "private", url, "--allow-restricted").exit_code == 0
    out = tmp_path / "rows.parquet"
    r = cli(data, "remote-load", url, "private", "--out", str(out))
    assert r.exit_code == 2 and "restricted" in r.output and not out.exists()
    assert cli(data, "remote-load", url, "private", "--out", str(out), "--allow-restricted").exit_code == 0


def test_blocked_copies_of_restricted_data_are_not_loaded_or_pulled_without_the_flag(s3, tmp_path):
    url = f"s3://{s3.bucket()}/copies"
    data = tmp_path / "owner"
    cat = guarded(data)  # `gen`: 2 kept rows, 2 blocked as copies of the restricted real set `private`
    for name in ("private", "gen"):  # the data owner publishes both
        assert cli(data, "push", name, url, "--allow-restricted").exit_code == 0
    secret = {i["bytes"] for i in open_version(cat, "private", allow_restricted=True).table(["image"])["image"].to_pylist()}
    copies = tmp_path / "copies.parquet"
    r = cli(tmp_path / "reader", "remote-load", url, "gen", "--status", "blocked_real_copy", "--out", str(copies))
    assert r.exit_code == 0 and "0 rows" in r.output and "2 blocked copies of restricted real data withheld" in r.output
    everything = tmp_path / "all.parquet"
    assert cli(tmp_path / "reader", "remote-load", url, "gen", "--status", "all", "--out", str(everything)).exit_code == 0
    for f in (copies, everything):
        assert not {i["bytes"] for i in pq.read_table(f)["image"].to_pylist()} & secret
    assert pq.read_table(everything)["status"].to_pylist() == ["kept", "kept"]

    reader = tmp_path / "reader"
    r = cli(reader, "pull", url, "gen")
    assert r.exit_code == 2 and "blocked copies" in r.output and "--allow-restricted" in r.output
    assert not Catalog(reader / "catalog").exists("gen")  # nothing copied
    r = cli(reader, "pull", url, "gen", "--allow-restricted")
    assert r.exit_code == 0 and "pulled gen@1" in r.output
    allowed = tmp_path / "allowed.parquet"
    r = cli(reader, "remote-load", url, "gen", "--status", "all", "--out", str(allowed), "--allow-restricted")
    assert r.exit_code == 0 and pq.read_table(allowed).num_rows == 4 and "withheld" not in r.output


def test_push_killed_before_head_moves_reads_as_before_and_reruns_to_completion(s3, tmp_path):
    url = f"s3://{s3.bucket()}/catalog"
    a, cat = data_dir_with_versions(tmp_path, "a", 0)
    assert cli(a, "push", "ds", url).exit_code == 0
    with cat.lock("ds"):
        cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(6, start=50)))])

    command = [sys.executable, "-m", "flows.cli", "--data-dir", str(a), "push", "ds", url]
    env = {**os.environ, "SYNTHGEN_FAILPOINT": "push-manifests:kill"}  # SIGKILL: nothing gets to clean up
    killed = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    remote = RemoteCatalog(url)
    assert remote.head("ds")[0] == 1  # manifest 2 is on the store, but HEAD never named it
    assert remote.open("ds").table().equals(open_version(cat, "ds@1").table())

    again = subprocess.run(command[:-3] + ["push", "ds", url], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert remote.head("ds") == (2, cat.head_sha256("ds"))
    assert cli(a, "remote-verify", url, "ds").exit_code == 0


def test_mlflow_artifacts_on_s3(s3, tmp_path, monkeypatch):
    """The tracker with an s3:// artifact root: MLflow writes through MLFLOW_S3_ENDPOINT_URL and reads back."""
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    from flows.tracking import Tracker

    bucket = s3.bucket()
    from flows.settings import Paths

    monkeypatch.setenv("SYNTHGEN_ARTIFACT_ROOT", f"s3://{bucket}/mlflow")  # how a user points a data folder at S3
    root = Paths(tmp_path).artifact_root
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", root, experiment="shared-artifacts")
    assert tracker.client.get_experiment(tracker.experiment_id).artifact_location == f"s3://{bucket}/mlflow"
    run_id = tracker.start_run("job", {"generator": {"steps": 4}})
    card = tmp_path / "card.md"
    card.write_text("# ds@1\nrows: 6\n")
    tracker.log_artifact(card, "cards")
    tracker.end()

    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"mlflow/{run_id}/artifacts/cards/card.md"]
    assert [a.path for a in tracker.client.list_artifacts(run_id, "cards")] == ["cards/card.md"]
    back = tracker.client.download_artifacts(run_id, "cards/card.md", str(tmp_path / "back"))
    assert open(back).read() == card.read_text()


def test_a_job_publishes_its_version_to_shared_storage(s3, prefect_server, tmp_path, monkeypatch):
    """With $SYNTHGEN_PUBLISH_URL set, the flow commits locally and publishes to S3 as its last step."""
    from flows.generate import generate_dataset
    from tests.conftest import small_job

    bucket = s3.bucket()
    url = f"s3://{bucket}/published"
    monkeypatch.setenv("SYNTHGEN_PUBLISH_URL", url)
    job = small_job("digits-pub", per_class=2, classes=(0, 1), dedup={"real_dataset": None})
    result = generate_dataset(job, str(tmp_path / "data"))
    assert result["published"] == f"{url}: digits-pub@1"
    remote = RemoteCatalog(url)
    assert remote.head("digits-pub")[0] == 1
    local = open_version(Catalog(tmp_path / "data" / "catalog"), "digits-pub@1").table()
    assert remote.open("digits-pub@1").table().equals(local)
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix="published/")["Contents"]}
    assert "published/digits-pub/versions/000001/card.md" in keys  # the card went with it
