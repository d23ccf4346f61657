"""A temporary Prefect server whose synthgen was killed is stopped by the next run; a live run's is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

from flows.prefect_server import _identity, _record, stop_orphans


def fake_server() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def write(records, server_pid: int, owner: list) -> None:
    records.mkdir(parents=True, exist_ok=True)
    (records / f"{server_pid}.json").write_text(json.dumps({"server": _identity(server_pid), "owner": owner}))


def test_a_server_whose_owner_is_gone_is_stopped_and_forgotten(tmp_path):
    records, server = tmp_path / "records", fake_server()
    try:
        write(records, server.pid, [server.pid + 10**6, 1.0])  # an owner that is no process
        assert stop_orphans(records) == [server.pid]
        assert server.wait(10) is not None
        assert list(records.iterdir()) == []
    finally:
        server.kill()


def test_a_live_runs_server_is_left_alone_and_a_gone_servers_record_dropped(tmp_path):
    records, server, gone = tmp_path / "records", fake_server(), fake_server()
    try:
        _record(records, server.pid)  # owned by this (live) process
        write(records, gone.pid, [gone.pid + 10**6, 1.0])
        gone.kill()
        gone.wait()
        (records / "9.json").write_text("{not json")  # unreadable: left for a person to look at
        assert stop_orphans(records) == []
        assert server.poll() is None
        assert sorted(p.name for p in records.iterdir()) == sorted([f"{server.pid}.json", "9.json"])
    finally:
        server.kill()
    assert stop_orphans(tmp_path / "none") == []  # no records folder yet
