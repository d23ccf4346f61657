"""Scale-out on Ray for real: `ray start` (a head with no CPU, two one-CPU worker nodes), then `synthgen run`.

The two worker nodes stand in for two machines; the models run on their CPU.
`synthgen run` sends the job to the cluster's actors, each actor process
killed (SIGKILL, by the failpoint) at its second shard, so at least one
shard dies with its actor and is run again by a new one; the same job runs
in this process (``run_job``, the data path every executor shares) in
another data folder; the two committed versions must hold the same rows and
the same dedup decisions. Nothing is shared between the
driver and the actors but the cluster and the catalog, on moto's S3
server: the samples come back through Ray's object store.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from catalog import Catalog
from flows.job.run import run_job
from tests.conftest import REPO, small_job
from tests.flows.test_schedule import BIN, base_env, free_port
from tests.s3_server import moto_s3

pytestmark = pytest.mark.long  # a cluster and two jobs: started first (tests/conftest.py)

DATASET = "digits-ray"
RUN_COLUMNS = ["prefect_flow_run_id", "mlflow_run_id", "created_at"]  # differ by run, by design
ACTOR_LINE = ":actor_name:ShardWorker"  # what Ray writes at the top of an actor process's log files


def job_spec() -> dict:
    # 3 classes x 3 images, one batch of 3 per shard: 3 shards, more than the two actors. Low thresholds
    # (for 2-step digits) so that dedup drops near-duplicates across shards: decisions to compare.
    spec = small_job(DATASET, per_class=3, dedup={"real_dataset": None, "threshold": 0.7})
    spec["generator"].update(steps=2, batch_size=3)
    spec["output"]["shard_size"] = 3
    return spec


def ray_start(args: list[str], env: dict, log: Path) -> int:
    """``ray start ARGS`` as the leader of a new session; the session id its daemons and actors stay in."""
    with open(log, "ab") as f:
        proc = subprocess.Popen([str(BIN / "ray"), "start", "--disable-usage-stats", *args], env=env, cwd=REPO,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    return proc.pid


def in_sessions(sessions: list[int]) -> list[int]:
    """The processes of these sessions (Ray puts each actor in a process group of its own, not its session)."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):  # not a process, or one that just ended
            continue
        if int(fields[3]) in sessions:  # after the name: state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def end_sessions(sessions: list[int]) -> None:
    """SIGTERM every process of the nodes' sessions, then SIGKILL what is left (not `ray stop`: it ends every
    Ray on the machine, another test's or user's too)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in in_sessions(sessions):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        for _ in range(50):
            if not in_sessions(sessions):
                return
            time.sleep(0.2)


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3):
    """A head node (no CPU: nothing runs there) and two worker nodes of one CPU each, on loopback."""
    tmp = tmp_path_factory.mktemp("ray")
    temp_dir = Path(tempfile.mkdtemp(prefix="sgray-"))  # short: Ray's socket paths must fit in 107 bytes
    env = base_env(tmp)
    # The actors import this checkout (as the CLI below does); the retries come at once. Token auth off, said
    # outright: a token a local ray.init() once left in ~/.ray would otherwise turn it on for some processes only.
    env.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
               SYNTHGEN_RETRY_DELAYS="0", HF_HUB_OFFLINE="1")
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})  # every node reaches the S3 server
    port = free_port()
    sessions: list[int] = []
    try:
        sessions.append(ray_start(["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard=false",
                                 "--temp-dir", str(temp_dir),
                                 "--dashboard-agent-listen-port", str(free_port())], env, tmp / "head.log"))
        for i in range(2):
            sessions.append(ray_start(["--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                                     "--dashboard-agent-listen-port", str(free_port())], env, tmp / f"node-{i}.log"))
        job = tmp / "job.yaml"
        job.write_text(yaml.safe_dump(job_spec()))
        yield {"tmp": tmp, "env": env, "address": f"127.0.0.1:{port}", "job": job, "temp_dir": temp_dir}
    finally:
        end_sessions(sessions)
        assert not in_sessions(sessions), "a Ray process outlived the test"
        shutil.rmtree(temp_dir, ignore_errors=True)


def synthgen_run(cluster: dict, name: str, extra_env: dict, catalog: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``synthgen run`` of the job in a fresh data folder, against the catalog at ``catalog``."""
    data = cluster["tmp"] / name
    cmd = [str(BIN / "synthgen"), "--data-dir", str(data), "--catalog", catalog, "run", str(cluster["job"]),
           "--json", str(cluster["tmp"] / f"{name}.json")]
    proc = subprocess.run(cmd, env={**cluster["env"], **extra_env}, cwd=REPO, capture_output=True, text=True,
                          timeout=400)
    (cluster["tmp"] / f"{name}.log").write_text(proc.stderr)
    return proc, data


def version_rows(cat: Catalog) -> tuple[list[list[str]], list]:
    """The committed version's shard layout (sample ids) and rows minus the per-run columns."""
    tables = [pq.read_table(cat.verified_shard(DATASET, s)) for s in cat.manifest(DATASET).shards]
    return [t["sample_id"].to_pylist() for t in tables], [t.drop_columns(RUN_COLUMNS) for t in tables]


def actor_processes(temp_dir: Path) -> int:
    """How many processes the cluster started for ShardWorker actors (each writes its own log files)."""
    logs = temp_dir.glob("session_*/logs/worker-*.out")
    return sum(1 for f in logs if ACTOR_LINE in f.read_text(errors="replace"))


def test_actors_killed_mid_job_still_commit_the_one_process_version(cluster, s3, tmp_path):
    # Each actor process is SIGKILLed when it samples its second shard: with three shards and two actors,
    # at least one shard dies with its actor and runs again on a new one. The catalog is on the S3 server.
    url = f"s3://{s3.bucket()}/catalog"
    dist, dist_data = synthgen_run(cluster, "ray", {"SYNTHGEN_RAY_ADDRESS": cluster["address"],
                                                    "SYNTHGEN_FAILPOINT": "sampling@2:kill"}, url)
    assert dist.returncode == 0, dist.stderr[-4000:]
    single_data = cluster["tmp"] / "single"
    theirs = run_job(job_spec(), single_data)  # the one-process reference: the same shard step, this process
    assert actor_processes(cluster["temp_dir"]) >= 3  # two actors, and at least one that replaced a killed one

    mine = json.loads((cluster["tmp"] / "ray.json").read_text())
    assert mine["version"] == theirs.version == 1 and not mine["reused"]
    assert mine["counts"] == theirs.counts and sum(mine["counts"].values()) == 9
    assert mine["counts"]["dropped_duplicate"]  # a decision to compare
    assert f"Ray cluster at {cluster['address']}" in mine["models"]["generator"]
    assert mine["metrics"]["generated_this_run"] == 9
    layout, tables = version_rows(Catalog(url, cache=tmp_path / "reader-cache"))
    single_layout, single_tables = version_rows(Catalog(single_data / "catalog"))
    assert not list(dist_data.rglob("*.parquet"))  # the driver kept no Parquet file of the job
    # 3 plan shards, each a training shard plus (when it dropped rows) an excluded one
    assert layout == single_layout and len(tables) >= 3 and sum(t.num_rows for t in tables) == 9
    for a, b in zip(tables, single_tables):
        differ = [c for c in a.column_names if not a[c].equals(b[c])]
        assert not differ and a.equals(b), differ  # images, seeds, provenance, embeddings, decisions
