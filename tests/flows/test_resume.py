"""Crash-safe resume: whole jobs killed with SIGKILL at five points, then rerun.

Each job runs as a user runs it (`synthgen run` in a subprocess, against the
session's Prefect test server, MLflow on SQLite in its data folder). A
failpoint (synthgen/failpoints.py) makes the process SIGKILL itself at a
chosen point; nothing gets to clean up. The same command then runs again
without it. It must finish, redo at most the interrupted shard, and commit a
version whose rows equal an uninterrupted run's, byte for byte, except the
three columns that record which run made a row (a resumed job's rows
truthfully name the killed run that generated them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from catalog import Catalog, ingest_folder
from catalog.verify import verify
from tests.conftest import small_job

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

SYNTHGEN = str(Path(sys.executable).with_name("synthgen"))
DATASET = "digits-resume"
SHARDS = 10
RUN_COLUMNS = ["prefect_flow_run_id", "mlflow_run_id", "created_at"]  # differ by run, by design


def job_spec() -> dict:
    # 3 classes x 10 images, one batch of 3 per shard: 10 shards.
    spec = small_job(DATASET, per_class=10)
    spec["generator"].update(steps=2, batch_size=3)
    spec["output"]["shard_size"] = 3
    return spec


@pytest.fixture(scope="module")
def seeded(prefect_server, real_digits_dir, embedder, tmp_path_factory) -> dict:
    """A data folder with the real digits ingested, copied fresh for each scenario; the job file; the env."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("resume")
    seed = root / "seed"
    ingest_folder(Catalog(seed / "catalog"), "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    # MLflow's schema once (3 s of migrations) instead of in every one of the 13 runs below.
    from mlflow import MlflowClient

    (seed / "mlflow").mkdir()
    MlflowClient(tracking_uri=f"sqlite:///{seed / 'mlflow' / 'mlflow.db'}").search_experiments()
    job = root / "job.yaml"
    job.write_text(yaml.safe_dump(job_spec()))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "SYNTHGEN_RETRY_DELAYS": "0"}
    env.pop("SYNTHGEN_DATA", None)
    return {"root": root, "seed": seed, "job": job, "env": env}


def run_job(seeded: dict, run: tuple[Path, str | None, dict]) -> subprocess.CompletedProcess:
    """``synthgen run JOB --json result.json`` in one (data folder, failpoint, extra env)."""
    data, failpoint, extra = run
    env = {**seeded["env"], **extra, **({"SYNTHGEN_FAILPOINT": failpoint} if failpoint else {})}
    cmd = [SYNTHGEN, "--data-dir", str(data), "run", str(seeded["job"]), "--json", str(data / "result.json")]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def fresh(seeded: dict, name: str) -> Path:
    """A copy of the seeded data folder for one scenario."""
    data = seeded["root"] / name
    shutil.copytree(seeded["seed"], data)
    return data


def staged(data: Path) -> list[Path]:
    """What a run left of each finished shard: its decision record, or its rows staged undecided."""
    return sorted([*(data / "staging").rglob("shard-*.parquet"), *(data / "staging").rglob("shard-*.decided.json")])


def finished(f: Path) -> tuple[str, int]:
    """(shard name, rows) of a staged shard or a decision record."""
    if f.suffix == ".parquet":
        return f.stem, pq.read_metadata(f).num_rows
    return f.name.split(".")[0], sum(json.loads(f.read_text())["counts"].values())


def version_rows(data: Path):
    """The committed version's rows in plan order, minus the per-run columns, and its shard layout."""
    cat = Catalog(data / "catalog")
    m = cat.manifest(DATASET)
    tables = [pq.read_table(cat.path(DATASET) / s.file) for s in m.shards]
    layout = [t["sample_id"].to_pylist() for t in tables]
    return m, [t.drop_columns(RUN_COLUMNS) for t in tables], layout


# (failpoint, shards staged when it fires, catalog version visible after the kill)
KILL_POINTS = [
    ("sampling@5", {3, 4}, None),     # inside shard 4, after its batch sampled (shard 3's tail may still run)
    ("parquet-write@1", {0}, None),   # shard 0 decided, its first final shard under its temp name
    ("shard-files@7", {6}, None),     # shard 6's final shards in place, its decision record not written
    ("publish", {SHARDS}, None),      # every shard decided and checked against the head, lock not taken
    ("manifest-written", {SHARDS}, None),  # manifest of version 1 written, HEAD not moved
    ("finishing", {0}, 1),            # version 1 committed (staging cleared); killed while logging to MLflow
]
BROKEN = ("sampling@3:raise-always", {"SYNTHGEN_SHARD_RETRIES": "1"})  # a shard that keeps failing
FLAKY = ("sampling@1:raise", {})  # a transient error on the first shard of a run


def unlisted_shards(data: Path) -> list[str]:
    """Files in the dataset's shards/ folder that no published version lists."""
    cat = Catalog(data / "catalog")
    folder = cat.path(DATASET) / "shards"
    if not cat.exists(DATASET) or not folder.is_dir():
        return []
    listed = {s.file for m in cat.versions(DATASET) for s in m.shards}
    return sorted(f"shards/{p.name}" for p in folder.iterdir() if f"shards/{p.name}" not in listed)


def after_kill(data: Path) -> dict:
    """What a reader sees in a data folder right after a crash."""
    cat = Catalog(data / "catalog")
    return {
        "unlisted": unlisted_shards(data),
        "head": cat.head(DATASET) if cat.exists(DATASET) else None,
        "verify_real": verify(cat, "digits-real").ok,
        "verify": verify(cat, DATASET).ok if cat.exists(DATASET) else True,
        "staged": [finished(f)[0] for f in staged(data)],
        "staged_readable": all(finished(f)[1] == 3 for f in staged(data)),
    }


@pytest.fixture(scope="module")
def scenarios(seeded) -> dict:
    """Every scenario's first run (killed, or failing) and its rerun.

    Scenarios use separate data folders, so their processes overlap, 3 at a time: most of a small
    job's time is start-up and waiting on Prefect's API. A scenario's rerun is queued as soon as its
    own first run has ended and its state is read, behind the first runs not yet started, so no
    slot sits idle waiting for the slowest first run of all (15 processes: 5 rounds of 3 where
    two batches of 8 and 7 took 6).
    """
    names = ["uninterrupted", *[f"kill-{p}" for p, _, _ in KILL_POINTS], "broken"]
    data = {n: fresh(seeded, n.replace("@", "-")) for n in names}
    first = {"uninterrupted": (data["uninterrupted"], None, {}), "broken": (data["broken"], *BROKEN),
             **{f"kill-{p}": (data[f"kill-{p}"], p, {}) for p, _, _ in KILL_POINTS}}
    again = {n: (data[n], *(FLAKY if n == "broken" else (None, {}))) for n in names[1:]}

    with ThreadPoolExecutor(3) as pool:
        def scenario(name: str):
            proc = run_job(seeded, first[name])
            state = after_kill(data[name])  # before this scenario reruns
            return proc, state, pool.submit(run_job, seeded, again[name]) if name in again else None

        started = {n: pool.submit(scenario, n) for n in names}
        done = {n: f.result() for n, f in started.items()}
        reruns = {n: rerun.result() for n, (_, _, rerun) in done.items() if rerun is not None}
    return {"data": data, "first": {n: d[0] for n, d in done.items()}, "state": {n: d[1] for n, d in done.items()},
            "rerun": reruns}


@pytest.fixture(scope="module")
def baseline(scenarios) -> dict:
    proc = scenarios["first"]["uninterrupted"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    m, tables, layout = version_rows(scenarios["data"]["uninterrupted"])
    assert sum(s.rows for s in m.shards) == 3 * SHARDS and {s.role for s in m.shards} <= {"train", "excluded"}
    result = json.loads((scenarios["data"]["uninterrupted"] / "result.json").read_text())
    return {"manifest": m, "tables": tables, "layout": layout, "result": result}


def assert_same_rows(data: Path, baseline: dict) -> None:
    manifest, tables, layout = version_rows(data)
    assert manifest.version == 1 and layout == baseline["layout"]
    for mine, theirs in zip(tables, baseline["tables"]):
        assert mine.equals(theirs)  # images, seeds, provenance, dedup decisions: identical


@pytest.mark.parametrize("point,staged_at_kill,visible", KILL_POINTS, ids=[p[0] for p in KILL_POINTS])
def test_sigkill_then_rerun_gives_the_uninterrupted_version(scenarios, baseline, point, staged_at_kill, visible):
    name = f"kill-{point}"
    killed, state, data = scenarios["first"][name], scenarios["state"][name], scenarios["data"][name]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    # After the kill: the catalog reads as before (no version, or the committed one), verify passes,
    # and whatever the kill left half-written is only ever a temp name.
    assert state["head"] == visible and state["verify"] and state["verify_real"]
    assert len(state["staged"]) in staged_at_kill and state["staged_readable"]
    # Decided shards wait in the job's folder: the catalog holds no file a version does not list,
    # except in the publish's own window (shards moved in, manifest written, HEAD not moved yet).
    assert (state["unlisted"] != []) == (point == "manifest-written")

    rerun = scenarios["rerun"][name]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads((data / "result.json").read_text())
    m = result["metrics"]
    if visible is None:  # redo at most the interrupted shard: every shard staged before the kill is reused
        assert m["shards_reused"] == len(state["staged"])
        assert m["generated_this_run"] == 3 * (SHARDS - len(state["staged"]))
    else:  # killed after its commit: the version is reused and nothing is generated again
        assert m["generated_this_run"] == 0
    assert result["reused"] == (visible is not None)
    assert_same_rows(data, baseline)
    assert result["counts"] == baseline["result"]["counts"]
    assert verify(Catalog(data / "catalog"), DATASET, 1).ok
    assert not list((data / "catalog").rglob(".tmp-*")), "a rerun leaves no temporary files behind"
    assert unlisted_shards(data) == [], "a rerun leaves no shard file that no version lists"


def test_failing_shard_is_retried_then_named(scenarios, baseline):
    # A shard that keeps failing: the run ends naming the shard and the error; earlier shards stay staged.
    proc, state = scenarios["first"]["broken"], scenarios["state"]["broken"]
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "shard-00002 (plan [6:9)) failed: InjectedFailure" in message and "rerun the same command" in message
    assert state["staged"] == ["shard-00000", "shard-00001"] and state["head"] is None

    # The rerun meets a transient error on its first shard: the retry succeeds, and the result
    # equals the uninterrupted run's.
    rerun = scenarios["rerun"]["broken"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "injected failure at sampling (hit 1)" in rerun.stderr  # Prefect logged the failed try
    data = scenarios["data"]["broken"]
    assert json.loads((data / "result.json").read_text())["metrics"]["shards_reused"] == 2
    assert_same_rows(data, baseline)


def test_killed_runs_are_marked_failed_by_the_run_that_resumed_them(seeded, scenarios):
    # The killed process could not close its runs; the rerun of the same spec finds them (same host, pid gone)
    # and marks them: MLflow FAILED, Prefect Crashed, each with a note naming the resuming run.
    from uuid import UUID

    from mlflow import MlflowClient
    from prefect import get_client

    def status(point: str) -> subprocess.CompletedProcess:
        return subprocess.run([SYNTHGEN, "--data-dir", str(scenarios["data"][f"kill-{point}"]), "status", "--json"],
                              env=seeded["env"], capture_output=True, text=True, timeout=120)

    # `synthgen status` for a run killed before its commit and for one killed after it (the same code shows
    # every point's runs; the stores are checked for all six below).
    shown_for = ("sampling@5", "finishing")
    with ThreadPoolExecutor(2) as pool:
        statuses = dict(zip(shown_for, pool.map(status, shown_for)))
    for point, _, _ in KILL_POINTS:
        data = scenarios["data"][f"kill-{point}"]
        resumed = json.loads((data / "result.json").read_text())
        client = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        killed = [r for r in runs if r.info.run_id != resumed["mlflow_run_id"]]
        assert len(runs) == 2 and len(killed) == 1, point
        dead = killed[0]
        assert dead.info.status == "FAILED", point
        assert resumed["mlflow_run_id"] in dead.data.tags["synthgen.note"]
        with get_client(sync_client=True) as prefect:
            state = prefect.read_flow_run(UUID(dead.data.tags["prefect.flow_run_id"])).state
            resumer = prefect.read_flow_run(UUID(resumed["prefect_flow_run_id"])).state
        assert state.is_crashed() and resumed["mlflow_run_id"] in state.message, (point, state)
        assert resumer.is_completed()

        if point not in statuses:
            continue
        shown = {r["mlflow_run_id"]: r for r in json.loads(statuses[point].stdout)["runs"]}
        assert shown[dead.info.run_id]["state"] == "FAILED" and "process died" in shown[dead.info.run_id]["note"]
        assert shown[resumed["mlflow_run_id"]]["state"] == "FINISHED"
        assert "RUNNING" not in {r["state"] for r in shown.values()}


@pytest.mark.parametrize("action, code, message", [
    ("interrupt", 130, "interrupted; committed versions are intact, rerun the job to resume"),
    ("terminate", 143, "terminated (SIGTERM); committed versions are intact, rerun the job to resume"),
])
def test_ctrl_c_or_sigterm_stops_the_shards_in_flight_leaves_no_process_and_a_rerun_resumes(seeded, action, code,
                                                                                           message):
    # Shards overlap (flows.executors.local) in worker threads, which signals do not reach: the executor
    # tells them to stop, and each stops at its next batch instead of finishing (and writing) its shard.
    # The run starts its own temporary Prefect server, as a user's does: Ctrl-C reaches the server too
    # (the terminal signals the whole process group) and SIGTERM used to leave it running.
    spec = job_spec()
    spec["generator"]["batch_size"] = 1  # 3 batches per shard: the signal lands inside shard 0
    job = seeded["root"] / f"job-{action}.yaml"
    job.write_text(yaml.safe_dump(spec))
    data = fresh(seeded, action)
    cmd = [SYNTHGEN, "--data-dir", str(data), "run", str(job), "--json", str(data / "result.json")]
    env = {**seeded["env"], "SYNTHGEN_FAILPOINT": f"sampling@1:{action}"}  # the signal after the first batch
    env.pop("PREFECT_API_URL")
    # As from a terminal: its own process group, and the default SIGINT disposition (a test runner started
    # in the background, as CI and `make test &` are, ignores SIGINT, and its children would inherit that).
    as_terminal = [sys.executable, "-c", "import os, signal, sys; os.setsid(); "
                   "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"]
    proc = subprocess.Popen(as_terminal + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == code, stderr[-3000:]
    assert message in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert staged(data) == [], "a shard in flight finished after the signal"
    assert not Catalog(data / "catalog").exists(DATASET) or Catalog(data / "catalog").head(DATASET) is None
    assert not group_alive(proc.pid), "a process of the run (Prefect's temporary server?) outlived it"
    rerun = subprocess.run(cmd, env=seeded["env"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads((data / "result.json").read_text())["metrics"]["generated_this_run"] == 3 * SHARDS
    assert verify(Catalog(data / "catalog"), DATASET, 1).ok


def group_alive(pgid: int, wait_s: float = 10.0) -> bool:
    """Whether any process is left in the process group ``pgid`` after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.2)
