"""A temporary Prefect server whose synthgen was killed is stopped by the next run; a live run's is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

import os

from flows.prefect_server import process_identity, write_record, stop_orphans
from flows.processes import command_line

DATA = {"SYNTHGEN_DATA": "/the/data/folder"}
# The command line of Prefect's temporary server (a sleeping Python stands in for uvicorn).
SERVER_ARGS = ["-m", "uvicorn", "--factory", "prefect.server.api.server:create_app"]


def fake_server(env: dict = DATA, args: list = SERVER_ARGS) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args], env={**os.environ, **env})


def write(records, server_pid: int, owner: list) -> None:
    records.mkdir(parents=True, exist_ok=True)
    server = [*process_identity(server_pid), command_line(server_pid)]
    (records / f"{server_pid}.json").write_text(json.dumps({"server": server, "owner": owner}))


def test_a_server_whose_owner_is_gone_is_stopped_and_forgotten(tmp_path):
    records, server = tmp_path / "records", fake_server()
    try:
        write(records, server.pid, [server.pid + 10**6, 1.0])  # an owner that is no process
        assert stop_orphans(records, DATA) == [server.pid]
        assert server.wait(10) is not None
        assert list(records.iterdir()) == []
    finally:
        server.kill()


def test_a_live_runs_server_is_left_alone_and_a_gone_servers_record_dropped(tmp_path):
    records, server, gone = tmp_path / "records", fake_server(), fake_server()
    try:
        write_record(records, server.pid)  # owned by this (live) process
        write(records, gone.pid, [gone.pid + 10**6, 1.0])
        gone.kill()
        gone.wait()
        (records / "9.json").write_text("{not json")  # unreadable: left for a person to look at
        assert stop_orphans(records, DATA) == []
        assert server.poll() is None
        assert sorted(p.name for p in records.iterdir()) == sorted([f"{server.pid}.json", "9.json"])
    finally:
        server.kill()
    assert stop_orphans(tmp_path / "none") == []  # no records folder yet


def test_a_planted_record_never_stops_a_process_that_is_not_this_folders_server(tmp_path):
    """A record is data: its pid, start time and command line are copied from any process of the user's."""
    records = tmp_path / "records"
    victims = [fake_server(args=[]),  # any process: not Prefect's server
               fake_server(env={"SYNTHGEN_DATA": "/another/data/folder"})]  # another folder's server
    try:
        for victim in victims:
            write(records, victim.pid, [victim.pid + 10**6, 1.0])  # its identity, exactly; an owner that is gone
        (records / "1.json").write_text(json.dumps({"server": [1, "0.0"], "owner": [10**30, "x"]}))  # old or odd
        (records / "2.json").write_text(json.dumps({"server": [2, "0.0", ["uvicorn", SERVER_ARGS[-1]]],
                                                    "owner": [-1, None]}))
        assert stop_orphans(records, DATA) == []
        assert all(v.poll() is None for v in victims)  # nothing signalled
    finally:
        for victim in victims:
            victim.kill()
