"""Scale-out for real: `prefect server start`, two workers on one pool, `mlflow server`, an S3 server, on loopback.

The two workers stand in for two machines with two GPUs each
(``SYNTHGEN_GPUS=0,1`` and ``=2,3``, ``--limit 2``; the models run on the
CPU), each shard on a GPU slot of its own while it runs. Like machines, they
share no path with the coordinator or each other: each starts in its own
empty folder with its own ``HOME``, ``TMPDIR`` and data folder, and runs
synthgen from a wheel installed there (not this checkout). One job runs
distributed with its catalog on the S3 server (its shards as flow runs on
the pool, staged on the store) and the same job runs in a single process with
a local catalog, both logging to the MLflow tracking server; the two
committed versions must hold the same rows and the same dedup decisions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from catalog import Catalog, ingest_folder
from catalog.publish import push
from flows.processes import stop_group
from tests.conftest import REPO, small_job
from tests.flows.test_schedule import BIN, base_env, free_port
from tests.s3_server import moto_s3

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

DATASET = "digits-scaleout"
POOL = "gpu-test"
# Differ by run, by design; code_commit names the installation that ran: this checkout's commit for the
# single-process run, none for the workers' wheel (built without a recorded commit).
RUN_COLUMNS = ["prefect_flow_run_id", "mlflow_run_id", "created_at", "code_commit"]
HOST = socket.gethostname()
WORKER_GPUS = ("0,1", "2,3")


def job_spec() -> dict:
    # 3 classes x 4 images, one batch of 3 per shard: 4 shards. Thresholds low enough (for 2-step
    # digits) that dedup drops near-duplicates across shards and blocks near-copies of real digits.
    spec = small_job(DATASET, per_class=4, dedup={"threshold": 0.7, "real_threshold": 0.8})
    spec["generator"].update(steps=2, batch_size=3)
    spec["output"]["shard_size"] = 3
    return spec


def start(args: list[str], env: dict, log: Path, cwd: Path = REPO) -> subprocess.Popen:
    """A service in its own process group (stopped with everything it spawned), logging to ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def install_wheel(tmp: Path) -> Path:
    """Build synthgen's wheel from a copy of the working tree and install it (no deps: they are this venv's)
    into a folder of its own; returns the folder, for a worker's ``PYTHONPATH``."""
    src = tmp / "src"
    for part in ("synthgen", "catalog", "flows"):
        shutil.copytree(REPO / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, src / part)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "wheel"), str(src)],
                   check=True, capture_output=True, timeout=300)
    site = tmp / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-compile", "--target", str(site),
                    *map(str, (tmp / "wheel").glob("synthgen-*.whl"))], check=True, capture_output=True, timeout=300)
    return site


def worker_env(env: dict, home: Path, site: Path) -> dict:
    """A worker machine's environment: its own HOME, TMPDIR and data folder, synthgen from the installed wheel."""
    for d in ("home", "tmp", "data"):
        (home / d).mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(home / "home"), "TMPDIR": str(home / "tmp"), "SYNTHGEN_DATA": str(home / "data"),
            "PYTHONPATH": str(site), "XDG_CACHE_HOME": str(home / "home" / ".cache")}


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(real_digits_dir, embedder, tmp_path_factory, s3):
    """Prefect server + MLflow server + two workers on one pool; a seed data folder with the real digits."""
    tmp = tmp_path_factory.mktemp("scaleout")
    env = base_env(tmp)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               SYNTHGEN_RETRY_DELAYS="0")
    env.pop("MLFLOW_TRACKING_URI", None)
    prefect_port, mlflow_port = free_port(), free_port()
    procs = []
    try:
        procs.append(start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                            str(prefect_port), "--no-ui"], env, tmp / "prefect-server.log"))
        procs.append(start([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                            "--artifacts-destination", str(tmp / "mlflow-artifacts"), "--host", "127.0.0.1",
                            "--port", str(mlflow_port), "--workers", "1"], env, tmp / "mlflow-server.log"))
        seed = tmp / "seed"  # ingest while the servers start
        ingest_folder(Catalog(seed / "catalog"), "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
        url = f"s3://{s3.bucket()}/team/catalog"  # the distributed job's catalog, holding the same real set
        push(Catalog(seed / "catalog"), "digits-real", url)
        site = install_wheel(tmp / "wheel")
        job = tmp / "job.yaml"
        job.write_text(yaml.safe_dump(job_spec()))
        env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})  # the S3 server, dummy keys
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{prefect_port}/api"
        env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{mlflow_port}"
        wait_healthy(env["PREFECT_API_URL"] + "/health", procs[0], tmp / "prefect-server.log")
        wait_healthy(env["MLFLOW_TRACKING_URI"] + "/health", procs[1], tmp / "mlflow-server.log")
        for gpus in WORKER_GPUS:  # one worker per "GPU machine", one shard per GPU at a time
            home = tmp / f"machine-{gpus.replace(',', '')}"
            # One shard process, on whichever machine samples first, is SIGKILLed at its first batch (once).
            died = {"SYNTHGEN_FAILPOINT": "sampling:kill-once", "SYNTHGEN_FAILPOINT_ONCE": str(tmp / "a-shard-died")}
            procs.append(start([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process",
                                "--limit", "2", "--name", f"worker-gpus-{gpus}"],
                               {**worker_env(env, home, site), "SYNTHGEN_GPUS": gpus, **died},
                               tmp / f"worker-{gpus}.log", cwd=home))
        yield {"tmp": tmp, "env": env, "seed": seed, "job": job, "url": url, "site": site, "workers": procs[2:]}
    finally:
        for proc in reversed(procs):
            stop_group(proc)


def synthgen_run(cluster: dict, name: str, extra_env: dict, catalog: str | None = None
                 ) -> tuple[subprocess.CompletedProcess, Path]:
    """``synthgen run`` of the job in a fresh copy of the seed data folder, or (``catalog``) in an empty
    data folder against that catalog."""
    data = cluster["tmp"] / name
    if catalog:
        data.mkdir()
    else:
        shutil.copytree(cluster["seed"], data)
    cmd = [str(BIN / "synthgen"), "--data-dir", str(data), *(["--catalog", catalog] if catalog else []),
           "run", str(cluster["job"]), "--json", str(data / "result.json")]
    proc = subprocess.run(cmd, env={**cluster["env"], **extra_env}, capture_output=True, text=True, timeout=400)
    (cluster["tmp"] / f"{name}.log").write_text(proc.stderr)
    return proc, data


@pytest.fixture(scope="module")
def jobs(cluster) -> dict:
    """The same job twice, at the same time: on the pool's workers, and in one process.

    On the pool two machines fail. A third machine takes the first shard and dies whole while sampling
    (its worker and the shard's process SIGKILLed: nothing is left to report; the others are paused until
    it has taken it); on the other two, one shard process is SIGKILLed at its first batch (``cluster``).
    """
    tmp = cluster["tmp"]
    sampling = tmp / "doomed-machine-sampling"
    for w in cluster["workers"]:
        os.killpg(w.pid, signal.SIGSTOP)
    doomed = start([str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1",
                    "--name", "worker-doomed"],
                   {**worker_env(cluster["env"], tmp / "doomed-machine", cluster["site"]), "SYNTHGEN_GPUS": "9",
                    "SYNTHGEN_FAILPOINT": "sampling:hang", "SYNTHGEN_FAILPOINT_ONCE": str(sampling)},
                   tmp / "worker-doomed.log", cwd=tmp / "doomed-machine")
    try:
        with ThreadPoolExecutor(2) as pool:
            # Heartbeats 30 s apart (Prefect's floor): the lost run is crashed 75 s after its last one.
            dist = pool.submit(synthgen_run, cluster, "distributed",
                               {"SYNTHGEN_SHARD_POOL": POOL, "SYNTHGEN_SHARD_HEARTBEAT_S": "30"}, cluster["url"])
            single = pool.submit(synthgen_run, cluster, "single", {})
            deadline = time.monotonic() + 240
            while not sampling.exists():
                assert time.monotonic() < deadline and not dist.done(), (tmp / "worker-doomed.log").read_text()[-3000:]
                time.sleep(0.5)
            machine = psutil.Process(doomed.pid)
            for p in [*machine.children(recursive=True), machine]:  # the machine goes: everything on it at once
                p.kill()
            for w in cluster["workers"]:
                os.killpg(w.pid, signal.SIGCONT)
            out = {}
            for name, fut in (("distributed", dist), ("single", single)):
                proc, data = fut.result()
                logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}" for p in tmp.glob("worker-*.log"))
                assert proc.returncode == 0, proc.stderr[-4000:] + logs
                out[name] = {"data": data, "result": json.loads((data / "result.json").read_text())}
    finally:
        for w in cluster["workers"]:
            os.killpg(w.pid, signal.SIGCONT)
        stop_group(doomed)
    return out

def version_rows(cat: Catalog) -> tuple[list[list[str]], list]:
    """The committed version's shard layout (sample ids) and rows minus the per-run columns."""
    m = cat.manifest(DATASET)
    tables = [pq.read_table(cat.verified_shard(DATASET, s)) for s in m.shards]
    return [t["sample_id"].to_pylist() for t in tables], [t.drop_columns(RUN_COLUMNS) for t in tables]


def flow_runs(cluster: dict, state: str) -> list[dict]:
    """The server's flow runs in ``state`` (a StateType), as {name, flow_run_id}."""
    body = json.dumps({"flow_runs": {"state": {"type": {"any_": [state]}}}}).encode()
    req = urllib.request.Request(f"{cluster['env']['PREFECT_API_URL']}/flow_runs/filter", body,
                                 {"Content-Type": "application/json"})
    return [{"name": r["name"], "flow_run_id": r["id"]} for r in json.loads(urllib.request.urlopen(req, timeout=10).read())]


def read_limit(cluster: dict, name: str) -> dict:
    url = f"{cluster['env']['PREFECT_API_URL']}/v2/concurrency_limits/{name}"
    return json.loads(urllib.request.urlopen(url, timeout=10).read())


def test_two_workers_make_the_single_process_dataset(cluster, jobs):
    dist, single = jobs["distributed"]["result"], jobs["single"]["result"]
    assert dist["version"] == single["version"] == 1 and not dist["reused"]
    assert dist["counts"] == single["counts"] and sum(dist["counts"].values()) == 12
    assert dist["counts"]["dropped_duplicate"] and dist["counts"]["blocked_real_copy"]  # decisions to compare
    at_url = Catalog(cluster["url"], cache=cluster["tmp"] / "reader-cache")
    layout, tables = version_rows(at_url)
    single_layout, single_tables = version_rows(Catalog(jobs["single"]["data"] / "catalog"))
    # 4 plan shards, each a training shard plus (when it dropped or blocked rows) an excluded one
    assert layout == single_layout and len(tables) >= 4 and sum(t.num_rows for t in tables) == 12
    for mine, theirs in zip(tables, single_tables):
        # images, seeds, provenance, dedup decisions: identical
        assert [c for c in mine.column_names if not mine[c].equals(theirs[c])] == [], (mine.to_pylist()[0], theirs.to_pylist()[0])

    # Every shard ran as its own flow run, holding the slot of a GPU its worker owns.
    runs = dist["shard_runs"]
    assert [r["shard"] for r in runs] == [0, 1, 2, 3] and not any(r["reused"] for r in runs)
    assert all(r["gpu"] in "0123" and r["slot"] == f"gpu-{HOST}-{r['gpu']}" for r in runs)
    # Which worker took which shard, and how many ran at once, is the scheduler's business; that a GPU
    # slot is never held by two shard runs at once is ours.
    for a in runs:
        for b in runs:
            if a is not b and a["slot"] == b["slot"]:
                assert a["held_until"] <= b["held_from"] or b["held_until"] <= a["held_from"], (a, b)
    assert len({r["flow_run_id"] for r in runs}) == 4 and single["shard_runs"] == []
    # The shard whose process was killed crashed (its worker said so), the one whose machine died went silent
    # and the server's automation crashed it; each was submitted again and its second run made its rows.
    assert (cluster["tmp"] / "a-shard-died").exists() and (cluster["tmp"] / "doomed-machine-sampling").exists()
    crashed = flow_runs(cluster, "CRASHED")
    assert len(crashed) == 2 and all(r["name"].startswith(f"{DATASET}-job-shard-") for r in crashed), crashed
    lost = [r for r in crashed if "no heartbeat" in read_state_message(cluster, r["flow_run_id"])]
    assert len(lost) == 1, crashed
    retried = {r["flow_run_id"] for r in flow_runs(cluster, "COMPLETED") if r["name"].endswith("-retry-1")}
    assert len(retried) == 2 and retried <= {r["flow_run_id"] for r in runs}
    assert {r["installed_at"] for r in runs} == {str(cluster["site"])}  # the wheel, not this checkout
    assert dist["metrics"]["generated_this_run"] == 12 and "workers of pool" in dist["models"]["generator"]
    for gpu in {r["gpu"] for r in runs}:
        limit = read_limit(cluster, f"gpu-{HOST}-{gpu}")
        assert limit["limit"] == 1 and limit["active_slots"] == 0  # created with one slot, released after use
    # The rows name the job's own flow run, wherever their shard ran.
    raw = [pq.read_table(at_url.verified_shard(DATASET, s)) for s in at_url.manifest(DATASET).shards]
    assert {t["prefect_flow_run_id"][0].as_py() for t in raw} == {dist["prefect_flow_run_id"]}
    assert {t["code_commit"][0].as_py() for t in raw} == {None}
    assert dist["files"][0].startswith(cluster["url"] + f"/{DATASET}/shards/")

    # No shared path: the job's shards went from the workers to the store and from there into the catalog.
    shard_files = {s.file.rsplit("/", 1)[1] for s in at_url.manifest(DATASET).shards}
    coordinator = jobs["distributed"]["data"]
    assert not shard_files & {p.name for p in coordinator.rglob("*.parquet")}
    assert not list((coordinator / "staging").rglob("*.parquet")) and not (coordinator / "catalog").exists()
    assert not [k for k in at_url.storage.files.find("_staging")]  # the store's staging is gone after the commit
    machines = sorted(cluster["tmp"].glob("machine-*")) + [cluster["tmp"] / "doomed-machine"]
    assert len(machines) == 3 and not any(shard_files & {p.name for p in m.rglob("*.parquet")} for m in machines)
    checked = subprocess.run([str(BIN / "synthgen"), "--data-dir", str(coordinator), "--catalog", cluster["url"],
                              "verify", DATASET, "--json"], env=cluster["env"], capture_output=True, text=True,
                             timeout=120)
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.stdout + checked.stderr[-2000:]


# Runs in a subprocess against the test's server: one worker owning GPUs 0 and 1, then a second on GPU 0 only.
SLOT_SCRIPT = """
import json, os, threading, time
from flows.executors.prefect_pool import device_slot
os.environ.update(SYNTHGEN_HOST="slot-test", SYNTHGEN_GPUS="0,1")
seen = {}
with device_slot() as first:
    with device_slot() as second:
        seen["first"], seen["second"] = first["slot"], second["slot"]
    os.environ["SYNTHGEN_GPUS"] = "0"
    def third():
        with device_slot() as slot:
            seen["third"], seen["third_at"] = slot["slot"], time.time()
    t = threading.Thread(target=third)
    t.start()
    time.sleep(3)
    seen["first_released_at"] = time.time()
t.join(60)
print(json.dumps(seen))
"""


def test_a_busy_gpu_is_skipped_or_waited_for(cluster):
    proc = subprocess.run([sys.executable, "-c", SLOT_SCRIPT], env=cluster["env"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "third" in seen, proc.stderr[-3000:]
    assert seen["first"] == "gpu-slot-test-0" and seen["second"] == "gpu-slot-test-1"  # GPU 0 busy: took GPU 1
    assert seen["third"] == "gpu-slot-test-0" and seen["third_at"] >= seen["first_released_at"]  # waited for it
    assert read_limit(cluster, "gpu-slot-test-0")["limit"] == 1


FAIL_SCRIPT = """
import sys
from prefect import flow
from catalog import RunRef
from flows.executors.base import ShardFailed
from flows.executors.prefect_pool import PrefectPoolExecutor
from flows.job.shard_step import ShardStep
from flows.settings import configure
from synthgen.plan import Shard
from synthgen.spec import parse_spec
import yaml

@flow
def job():
    spec = parse_spec(yaml.safe_load(open(sys.argv[1])))
    configure(sys.argv[2])
    list(PrefectPoolExecutor(sys.argv[3], sys.argv[2]).map(ShardStep(spec, RunRef()), [Shard(99, 0, 3)], None))

try:
    job()
except ShardFailed as exc:
    print("SHARD FAILED:", exc)
"""


def test_a_failed_shard_run_is_named(cluster, jobs):
    data = cluster["tmp"] / "failing"
    proc = subprocess.run([sys.executable, "-c", FAIL_SCRIPT, str(cluster["job"]), str(data), POOL],
                          env=cluster["env"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "SHARD FAILED:" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-3000:]
    message = proc.stdout.split("SHARD FAILED:", 1)[1]
    assert f"on pool {POOL!r} failed: shard-00099 (plan [0:3)) flow run" in message and "FAILED" in message
    # It raised after the shard step's own retries on its worker: not submitted again (a crash would be).
    assert not [r for r in flow_runs(cluster, "FAILED") if "shard-00099-retry" in r["name"]]


def test_mlflow_tracking_server_holds_both_runs(cluster, jobs):
    from mlflow import MlflowClient

    url = cluster["env"]["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=url)
    for name, job in jobs.items():
        r = job["result"]
        assert r["mlflow_tracking_uri"] == url
        run = client.get_run(r["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.info.run_name == f"{DATASET}-job"
        assert run.data.params["output.dataset"] == DATASET and run.data.params["generator.steps"] == "2"
        assert run.data.metrics["generated"] == 12 and run.data.metrics["kept"] == r["counts"]["kept"]
        assert run.data.tags["synthgen.dataset"] == f"{DATASET}@1"
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"grid.png", "job.yaml", "000001.json"} <= artifacts
        dst = cluster["tmp"] / f"download-{name}"
        dst.mkdir()
        spec = yaml.safe_load(Path(client.download_artifacts(run.info.run_id, "job.yaml", str(dst))).read_text())
        assert spec["output"]["dataset"] == DATASET
        # The server stored the artifacts (served over HTTP), not the job's data folder.
        assert not (job["data"] / "mlflow" / "artifacts").exists()
    assert list((cluster["tmp"] / "mlflow-artifacts").rglob("grid.png"))
    dist = client.get_run(jobs["distributed"]["result"]["mlflow_run_id"])
    assert dist.data.tags["synthgen.shard_pool"] == POOL
    assert "shard-runs.json" in {a.path for a in client.list_artifacts(dist.info.run_id)}


def test_a_schedule_can_send_its_shards_to_the_pool(cluster):
    proc = subprocess.run([str(BIN / "synthgen"), "--data-dir", str(cluster["tmp"] / "nightly"), "schedule",
                           str(cluster["job"]), "--pool", "cpu-test", "--shards-on", POOL, "--name", "nightly-dist"],
                          env=cluster["env"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"--pool {POOL}" in " ".join(proc.stdout.split())  # says how to start a GPU worker
    url = f"{cluster['env']['PREFECT_API_URL']}/deployments/name/synthgen-generate/nightly-dist"
    dep = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert dep["work_pool_name"] == "cpu-test" and dep["parameters"]["shard_pool"] == POOL
    assert dep["entrypoint"] == "flows.generate.generate_dataset" and not dep["pull_steps"]  # from the installed package
    # With the catalog on the store, the worker that runs the job keeps its own data folder.
    at_url = subprocess.run([str(BIN / "synthgen"), "--data-dir", str(cluster["tmp"] / "nightly"), "--catalog",
                             cluster["url"], "schedule", str(cluster["job"]), "--pool", "cpu-test", "--shards-on", POOL,
                             "--name", "nightly-s3"], env=cluster["env"], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert at_url.returncode == 0, at_url.stderr[-3000:]
    dep = json.loads(urllib.request.urlopen(url.replace("nightly-dist", "nightly-s3"), timeout=10).read())
    assert dep["parameters"]["data_dir"] is None and dep["parameters"]["settings"]["catalog"] == cluster["url"]
    assert dep["parameters"]["settings"]["data"] is None


def read_state_message(cluster: dict, run_id: str) -> str:
    """The message of a flow run's current state (why it ended)."""
    url = f"{cluster['env']['PREFECT_API_URL']}/flow_runs/{run_id}"
    return json.loads(urllib.request.urlopen(url, timeout=10).read())["state"]["message"] or ""
