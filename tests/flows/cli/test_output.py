"""Output tools can read: --json documents, lines that never wrap in a pipe, ingest's skip option."""

from __future__ import annotations

import json
import shutil

import pytest

from catalog import Catalog, open_version
from tests.flows.cli_process import seed_data, synthgen


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    # A long folder name: wrapped output would split it (and the hashes next to it) across lines.
    root = tmp_path_factory.mktemp("cli-output") / ("a-data-folder-with-a-long-name-" * 4)
    root.mkdir()
    data, good = seed_data(root)
    return {"data": data, "good": good}


def test_json_documents(seeded):
    data = seeded["data"]
    listed = json.loads(synthgen(data, "datasets", "--json").stdout)
    assert {d["name"]: (d["origin"], d["head"], d["rows"]) for d in listed["datasets"]} == {
        "real": ("real", 1, 20), "synth": ("synthetic", 1, 6)}
    versions = json.loads(synthgen(data, "versions", "synth", "--json").stdout)
    assert [v["version"] for v in versions["versions"]] == [1] and versions["versions"][0]["rows"] == 6
    checked = json.loads(synthgen(data, "verify", "synth", "--json").stdout)
    assert checked["ok"] is True and checked["shards_checked"] == 1 and len(checked["head_sha256"]) == 64
    sid = open_version(Catalog(data / "catalog"), "synth").table(["sample_id"])["sample_id"][0].as_py()
    audited = json.loads(synthgen(data, "audit", sid, "--json").stdout)
    assert audited["records"][0]["dataset"] == "synth" and audited["records"][0]["row"]["sample_id"] == sid
    status = synthgen(data, "status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    assert json.loads(status.stdout)["runs"] == []  # no job has run in this folder


def test_verify_reports_corruption_in_json_with_exit_1(seeded, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(seeded["data"], data)
    shard = next((data / "catalog" / "synth" / "shards").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    proc = synthgen(data, "verify", "synth", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and shard.name in " ".join(report["problems"])


def test_piped_output_never_wraps(seeded):
    data = seeded["data"]
    proc = synthgen(data, "verify", "synth", env={"COLUMNS": "40"})
    sha = Catalog(data / "catalog").head_sha256("synth")
    line = next(x for x in proc.stdout.splitlines() if sha in x)
    assert line.startswith("synth@1: ") and line.rstrip().endswith("OK")  # all on one line
    table = synthgen(data, "datasets", env={"COLUMNS": "40"}).stdout
    assert str(data / "catalog") in table  # the title's long path is whole


def test_ingest_skip_bad_counts_what_it_left_out(seeded, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(seeded["data"], data)
    folder = tmp_path / "mixed"
    shutil.copytree(seeded["good"] / "seven", folder / "seven")
    (folder / "seven" / "notes.txt").write_text("not an image\n")
    refused = synthgen(data, "ingest", str(folder), "--name", "mixed-real")
    assert refused.returncode == 2 and "seven/notes.txt" in refused.stderr
    assert not Catalog(data / "catalog").exists("mixed-real")  # nothing created
    proc = synthgen(data, "ingest", str(folder), "--name", "mixed-real", "--skip-bad")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "skipped 1 unreadable file(s)" in proc.stdout and "seven/notes.txt" in proc.stderr
    m = Catalog(data / "catalog").manifest("mixed-real")
    assert m.rows == 2 and [s["file"] for s in m.prov["skipped"]] == ["seven/notes.txt"]



@pytest.mark.parametrize("args", [["datasets", "--json"], ["query", "SELECT * FROM real"]])
def test_a_reader_that_went_away_ends_the_command_quietly(seeded, args):
    """`synthgen ... | head -1`: no error line and no traceback when the pipe is closed."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: every write fails with EPIPE
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "--data-dir", str(seeded["data"]), *args],
                          stdout=write, stderr=subprocess.PIPE, env=env, timeout=120)
    os.close(write)
    stderr = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in stderr and "error:" not in stderr and "Broken pipe" not in stderr, stderr[-2000:]
