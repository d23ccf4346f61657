"""Scheduling for real: `prefect server start`, a work pool, a worker process, a deployment run."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from catalog import Catalog
from flows.processes import stop_group
from tests.conftest import REPO, small_job

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_WORKER_PREFETCH_SECONDS="30",
               SYNTHGEN_DATA=str(tmp / "data"))
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sched")
    port = free_port()
    env = base_env(tmp)
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                             "--no-ui"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        stop_group(proc)
        pytest.fail("prefect server did not start within 180 s")
    env["PREFECT_API_URL"] = url
    yield tmp, env
    stop_group(proc)


def synthgen(env, *args, timeout=180):
    return subprocess.run([str(BIN / "synthgen"), *args], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def test_schedule_without_a_server_says_what_to_do(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_job()))
    proc = synthgen(base_env(tmp_path), "schedule", str(spec), "--cron", "0 2 * * *")
    assert proc.returncode == 2
    assert "prefect server start" in proc.stderr and "PREFECT_API_URL" in proc.stderr


def test_scheduled_job_runs_on_a_worker_and_commits_a_version(server):
    tmp, env = server
    spec = tmp / "job.yaml"
    job = small_job(dataset="digits-nightly", per_class=2, dedup={"real_dataset": None})
    spec.write_text(yaml.safe_dump(job))
    proc = synthgen(env, "schedule", str(spec), "--cron", "0 2 * * *", "--pool", "test-pool", "--name", "nightly")
    assert proc.returncode == 0, proc.stderr
    listed = synthgen(env, "schedules")
    assert "nightly" in listed.stdout and "0 2 * * *" in listed.stdout and "test-pool" in listed.stdout
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "test-pool"], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        run = subprocess.run([str(BIN / "prefect"), "deployment", "run", "synthgen-generate/nightly"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        cat = Catalog(tmp / "data" / "catalog")
        deadline = time.time() + 300
        while time.time() < deadline and not (cat.exists("digits-nightly") and cat.head("digits-nightly")):
            time.sleep(1)
        assert cat.head("digits-nightly") == 1
        assert cat.manifest("digits-nightly").rows == 6
    finally:
        stop_group(worker)
    assert synthgen(env, "unschedule", "nightly").returncode == 0
    assert "nightly" not in synthgen(env, "schedules").stdout


def test_schedules_shows_the_next_run_times_right_after_schedule(server):
    """The cron says when the next runs are due before Prefect's scheduler has created any of them."""
    import datetime

    tmp, env = server
    spec = tmp / "cron-job.yaml"
    spec.write_text(yaml.safe_dump(small_job(dataset="digits-cron")))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert synthgen(env, "schedule", str(spec), "--cron", "0 2 * * *", "--pool", "cron-pool",
                    "--name", "at-two").returncode == 0
    listed = synthgen(env, "schedules")
    assert listed.returncode == 0, listed.stderr
    first = now.replace(hour=2, minute=0, second=0, microsecond=0)
    first += datetime.timedelta(days=1) if first <= now else datetime.timedelta(0)
    for day in range(3):
        assert (first + datetime.timedelta(days=day)).strftime("%Y-%m-%d 02:00:00 UTC") in listed.stdout, listed.stdout
    assert synthgen(env, "unschedule", "at-two").returncode == 0
