"""`synthgen status` tells a run whose process died from a live one, before the job reruns (and writes nothing)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from typer.testing import CliRunner

from flows.cli.app import app
from flows.dead_runs import HOST_TAG, PID_TAG, STARTED_TAG, owner_tags
from flows.settings import configure
from flows.tracking import Tracker


def test_status_shows_a_killed_run_as_died_a_live_or_foreign_one_as_running(tmp_path):
    paths = configure(tmp_path / "data")
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process (or, reused, a newer one: another start time)
    owners = {
        "killed": {HOST_TAG: socket.gethostname(), PID_TAG: str(gone.pid), STARTED_TAG: "1.000"},
        "alive": owner_tags(),  # this process
        "elsewhere": {HOST_TAG: "another-machine", PID_TAG: str(gone.pid), STARTED_TAG: "1.000"},
    }
    ids = {name: tracker.client.create_run(tracker.experiment_id, tags=tags, run_name=name).info.run_id
           for name, tags in owners.items()}
    res = CliRunner().invoke(app, ["--data-dir", str(paths.root), "status", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    shown = {r["mlflow_run_id"]: r for r in json.loads(res.output)["runs"]}
    assert shown[ids["killed"]]["state"] == "DIED" and "rerun the same job" in shown[ids["killed"]]["note"]
    assert shown[ids["alive"]]["state"] == "RUNNING" and shown[ids["elsewhere"]]["state"] == "RUNNING"
    assert {r["mlflow_state"] for r in shown.values()} == {"RUNNING"}  # only shown: nothing was marked
    assert tracker.client.get_run(ids["killed"]).info.status == "RUNNING"
