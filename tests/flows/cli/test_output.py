"""Output tools can read: --json documents, lines that never wrap in a pipe, ingest's skip option."""

from __future__ import annotations

import json
import shutil

import pytest

from catalog import Catalog, open_version, samples_to_table
from tests.conftest import REPO, make_samples
from tests.flows.cli_process import MODEL_LIBRARIES, ForkedCli, seed_data


@pytest.fixture(scope="module")
def synthgen():
    """``synthgen(data, *args)``: each command a process of its own, forked from one interpreter that imported the
    CLI and the model libraries (the pipe and Ctrl-C cases below start theirs as a user does)."""
    cli = ForkedCli(preload=MODEL_LIBRARIES)
    yield cli
    cli.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    # A long folder name: wrapped output would split it (and the hashes next to it) across lines.
    root = tmp_path_factory.mktemp("cli-output") / ("a-data-folder-with-a-long-name-" * 4)
    root.mkdir()
    data, good = seed_data(root)
    return {"data": data, "good": good}


def test_json_documents(seeded, synthgen):
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


def test_verify_reports_corruption_in_json_with_exit_1(seeded, tmp_path, synthgen):
    data = tmp_path / "data"
    shutil.copytree(seeded["data"], data)
    shard = next((data / "catalog" / "synth" / "shards").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    proc = synthgen(data, "verify", "synth", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and shard.name in " ".join(report["problems"])


def test_piped_output_never_wraps(seeded, synthgen):
    data = seeded["data"]
    proc = synthgen(data, "verify", "synth", env={"COLUMNS": "40"})
    sha = Catalog(data / "catalog").head_sha256("synth")
    line = next(x for x in proc.stdout.splitlines() if sha in x)
    assert line.startswith("synth@1: ") and line.rstrip().endswith("OK")  # all on one line
    table = synthgen(data, "datasets", env={"COLUMNS": "40"}).stdout
    assert str(data / "catalog") in table  # the title's long path is whole


def test_ingest_skip_bad_counts_what_it_left_out(seeded, tmp_path, synthgen):
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


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m[red]x[/]\u202e"  # retitle the terminal, clear it, colour, markup, bidi


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A data folder whose rows carry terminal escapes in their class name and prompt, and float32 scores."""
    import dataclasses

    data, _ = seed_data(tmp_path_factory.mktemp("hostile"))
    cat = Catalog(data / "catalog")
    cat.create("evil", "synthetic")
    rows = [dataclasses.replace(s, class_name=HOSTILE, prompt="p" + HOSTILE, nn_similarity=0.98, nn_id="s00001",
                                nn_source="synthetic", real_nn_similarity=0.9826186)
            for s in make_samples(3)]
    cat.commit("evil", [cat.write_shard("evil", samples_to_table(rows, embedding_model="m"))], embedding_model="m")
    sid = open_version(cat, "evil").table(["sample_id"])["sample_id"][0].as_py()
    return {"data": data, "sid": sid}


@pytest.mark.parametrize("args", [["query", "SELECT label_name, prompt FROM evil"], ["load", "evil"],
                                  ["audit", "{sid}"], ["card", "evil"], ["query", "SELECT chr(27) || '[2J' AS x"]])
def test_no_control_character_from_data_reaches_the_terminal(hostile, args, synthgen):
    args = [a.format(sid=hostile["sid"]) for a in args]
    proc = synthgen(hostile["data"], *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for stream in (proc.stdout, proc.stderr):
        assert not any(ch in stream for ch in "\x1b\x07\u202e"), repr(stream[-2000:])
    assert "\\x1b[2J" in proc.stdout  # shown, as an escape a person can read
    if args[0] != "query" or "evil" in args[1]:
        assert "[red]x[/]" in proc.stdout  # data is never read as markup


def test_json_output_keeps_the_data_exact(hostile, synthgen):
    audited = json.loads(synthgen(hostile["data"], "audit", hostile["sid"], "--json").stdout)
    assert audited["records"][0]["row"]["label_name"] == HOSTILE


def test_a_pipe_gets_field_value_lines_and_tab_separated_lists_never_padded(hostile, synthgen):
    audited = synthgen(hostile["data"], "audit", hostile["sid"]).stdout.splitlines()
    assert audited[0].startswith(f"sample {hostile['sid']} in evil (versions 1)")
    assert f"sample_id: {hostile['sid']}" in audited and "origin: synthetic" in audited
    assert all(not line.endswith(" ") for line in audited) and max(map(len, audited)) < 200  # no padding
    listed = synthgen(hostile["data"], "datasets").stdout.splitlines()
    assert listed[1].split("\t") == ["name", "origin", "head", "rows", "kept", "restricted"]
    assert listed[2].split("\t") == ["evil", "synthetic", "1", "3", "3", ""]
    rows = synthgen(hostile["data"], "query", "SELECT sample_id, label FROM evil ORDER BY 1").stdout.splitlines()
    assert rows[:2] == ["sample_id\tlabel", f"{hostile['sid']}\t0"]


def test_float32_values_are_shown_as_written_not_with_float64_noise(hostile, synthgen):
    audited = synthgen(hostile["data"], "audit", hostile["sid"]).stdout
    assert "nn_similarity: 0.98" in audited.splitlines()
    assert "0.9800000190734863" not in audited
    queried = synthgen(hostile["data"], "query", "SELECT nn_similarity FROM evil LIMIT 1").stdout.splitlines()
    assert queried[1] == "0.98"
    card = synthgen(hostile["data"], "card", "evil").stdout
    assert "highest similarity to a real sample: 0.9826186\n" in card and "0.98261857" not in card


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (all its threads), from /proc."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ctrl_c_stops_a_long_query_at_once_with_exit_130_and_one_line(hostile):
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(  # hours of work: a cross join of 10^12 rows
        [sys.executable, "-m", "flows.cli", "--data-dir", str(hostile["data"]), "query",
         "SELECT sum(hash(a.range * b.range)) FROM range(1000000) a, range(1000000) b"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # As from a terminal: a test runner started in the background (CI, `make test &`) ignores SIGINT,
        # and its children inherit that, so the Ctrl-C below would never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Into the query, whatever the machine's load: the CLI starts on about 1 s of CPU; only the query
    # (DuckDB on every core) burns 4 s. A Ctrl-C during start-up is another test's business.
    deadline = time.time() + 120
    while cpu_seconds(proc.pid) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=60)  # the run took 76 s and ended in a traceback
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert err.strip() == "interrupted: the query was stopped" and out == ""
