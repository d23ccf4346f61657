"""Failpoints: ``kill-once`` SIGKILLs only the first of the processes that share its marker file; ``hang``; a resumed run's count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from synthgen.failpoints import after_reused
from tests.conftest import REPO

SCRIPT = "from synthgen.failpoints import failpoint; failpoint('sampling'); failpoint('sampling'); print('went on')"


def test_kill_once_kills_the_first_process_only(tmp_path):
    env = {**os.environ, "SYNTHGEN_FAILPOINT": "sampling:kill-once", "SYNTHGEN_FAILPOINT_ONCE": str(tmp_path / "died")}
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=60) for _ in range(2)]
    assert runs[0].returncode == -signal.SIGKILL and not runs[0].stdout
    assert runs[1].returncode == 0 and runs[1].stdout.strip() == "went on"
    assert (tmp_path / "died").exists()


def test_after_reused_counts_only_the_shards_a_resumed_run_works_on():
    assert after_reused("shard-files@7", 4) == "shard-files@3"  # shard 6 of the plan, 4 shards reused
    assert after_reused("sampling@3:raise", 1) == "sampling@2:raise"
    assert after_reused("publish", 10) == "publish"  # passed once per run, whatever was reused
    with pytest.raises(ValueError, match="reused"):
        after_reused("sampling@2", 2)  # the place it names was finished by the earlier run


def test_hang_holds_the_process_there_after_marking_it(tmp_path):
    marker = tmp_path / "hanging"
    env = {**os.environ, "SYNTHGEN_FAILPOINT": "sampling:hang", "SYNTHGEN_FAILPOINT_ONCE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        while not marker.exists():
            assert proc.poll() is None  # reached the point alive
            time.sleep(0.05)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1)  # and stays there
    finally:
        proc.kill()
    assert proc.wait(10) == -signal.SIGKILL and proc.stdout.read() == ""
