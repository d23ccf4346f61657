"""Crash-safe resume: a job killed with SIGKILL at six points, one after another, then run to the end.

Each job runs as a user runs it (`synthgen run` in a subprocess, against the
session's Prefect test server, MLflow on SQLite in its data folder). A
failpoint (synthgen/failpoints.py) makes the process SIGKILL itself at a
chosen point; nothing gets to clean up. The same command then runs again:
in one data folder, each run resumes what the run before it left and is
itself killed at the next point, in the order a job passes them, until a
last run without a failpoint. Every run must reuse every shard staged before
it (redo at most the interrupted shard), and the last one must commit a
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
from synthgen.failpoints import after_reused
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
    """``synthgen run JOB --json result.json`` in one (data folder, failpoint, extra env); ``.pid``: its process."""
    data, failpoint, extra = run
    env = {**seeded["env"], **extra, **({"SYNTHGEN_FAILPOINT": failpoint} if failpoint else {})}
    cmd = [SYNTHGEN, "--data-dir", str(data), "run", str(seeded["job"]), "--json", str(data / "result.json")]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    done.pid = proc.pid  # the MLflow run it started is tagged with it (flows.dead_runs.owner_tags)
    return done


def fresh(seeded: dict, name: str) -> Path:
    """A copy of the seeded data folder for one scenario."""
    data = seeded["root"] / name
    shutil.copytree(seeded["seed"], data)
    return data


def staged(data: Path) -> list[Path]:
    """What a run left of each finished shard: its decision record, or its rows staged undecided."""
    return sorted([*(data / "staging").rglob("shard-*.parquet"), *(data / "staging").rglob("shard-*.decided.json")])


def fingerprints(data: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each staged file's (inode, mtime, bytes): a file a later run rewrote, even with the same bytes, differs."""
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns, f.read_bytes()) for f in staged(data)}


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


# (failpoint, shards staged when it fires, catalog version visible after the kill), in the order one job's
# runs are killed: each run resumes the previous one's staging. "@n" names the n-th shard of the plan; a run
# passes `sampling` and `shard-files` once per shard it generates (one batch each), and a resumed run generates
# only the shards not staged (`synthgen.failpoints.after_reused`).
KILL_POINTS = [
    ("parquet-write@1", {0}, None),   # fresh: shard 0 decided, its first final shard under its temp name
    ("sampling@5", {3, 4}, None),     # nothing staged yet: inside shard 4, after its batch sampled (shard 3's tail may still run)
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
    """The uninterrupted run; the kill chain (a run killed at each point in turn, then one to the end); the
    failing run and its rerun. Three data folders, three lanes of processes at once: most of a small job's
    time is start-up and waiting on Prefect's API. Each killed run's state is read before the next run starts.
    """
    data = {n: fresh(seeded, n) for n in ("uninterrupted", "chain", "broken")}

    def chain():
        killed, states, staged_by = [], [], []
        for point, _, _ in KILL_POINTS:
            before = fingerprints(data["chain"])
            killed.append(run_job(seeded, (data["chain"], after_reused(point, len(before)), {})))
            states.append(after_kill(data["chain"]))
            staged_by.append((before, fingerprints(data["chain"])))
        return killed, states, staged_by, run_job(seeded, (data["chain"], None, {}))

    def broken():
        proc = run_job(seeded, (data["broken"], *BROKEN))
        return proc, after_kill(data["broken"]), run_job(seeded, (data["broken"], *FLAKY))

    with ThreadPoolExecutor(3) as pool:
        lanes = [pool.submit(chain), pool.submit(run_job, seeded, (data["uninterrupted"], None, {})),
                 pool.submit(broken)]
        (killed, states, staged_by, last), uninterrupted, broken_lane = [f.result() for f in lanes]
    return {"data": data, "uninterrupted": uninterrupted, "broken": broken_lane, "last": last,
            **{key: dict(zip((p for p, _, _ in KILL_POINTS), value))
               for key, value in (("killed", killed), ("state", states), ("staged_by", staged_by))}}


@pytest.fixture(scope="module")
def baseline(scenarios) -> dict:
    proc = scenarios["uninterrupted"]
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
def test_sigkill_leaves_a_state_the_next_run_resumes(scenarios, point, staged_at_kill, visible):
    killed, state = scenarios["killed"][point], scenarios["state"][point]
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]  # the failpoint fired: nothing cleaned up

    # After the kill: the catalog reads as before (no version, or the committed one), verify passes,
    # and whatever the kill left half-written is only ever a temp name.
    assert state["head"] == visible and state["verify"] and state["verify_real"]
    assert len(state["staged"]) in staged_at_kill and state["staged_readable"]
    # Decided shards wait in the job's folder: the catalog holds no file a version does not list,
    # except in the publish's own window (shards moved in, manifest written, HEAD not moved yet).
    assert (state["unlisted"] != []) == (point == "manifest-written")
    # The run resumed the previous run's staging: each shard staged before it is the same file, untouched
    # (reused, not generated and decided again), so it redid at most the shard the previous kill interrupted.
    before, after = scenarios["staged_by"][point]
    if visible is None:
        assert {f: after.get(f) for f in before} == before
    else:  # committed: the version holds them and the staging area is gone
        assert after == {} and len(before) == SHARDS


def test_the_run_after_the_last_kill_gives_the_uninterrupted_version(scenarios, baseline):
    rerun, data = scenarios["last"], scenarios["data"]["chain"]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    result = json.loads((data / "result.json").read_text())
    # Killed after its commit: the version is reused and nothing is generated again.
    assert result["reused"] and result["metrics"]["generated_this_run"] == 0
    assert_same_rows(data, baseline)
    assert result["counts"] == baseline["result"]["counts"]
    assert verify(Catalog(data / "catalog"), DATASET, 1).ok
    assert not list((data / "catalog").rglob(".tmp-*")), "a rerun leaves no temporary files behind"
    assert unlisted_shards(data) == [], "a rerun leaves no shard file that no version lists"
    assert not (data / "staging").exists() or staged(data) == []


def test_failing_shard_is_retried_then_named(scenarios, baseline):
    # A shard that keeps failing: the run ends naming the shard and the error; earlier shards stay staged.
    proc, state, rerun = scenarios["broken"]
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "shard-00002 (plan [6:9)) failed: InjectedFailure" in message and "rerun the same command" in message
    assert state["staged"] == ["shard-00000", "shard-00001"] and state["head"] is None

    # The rerun meets a transient error on its first shard: the retry succeeds, and the result
    # equals the uninterrupted run's.
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "injected failure at sampling (hit 1)" in rerun.stderr  # Prefect logged the failed try
    data = scenarios["data"]["broken"]
    assert json.loads((data / "result.json").read_text())["metrics"]["shards_reused"] == 2
    assert_same_rows(data, baseline)


def test_killed_runs_are_marked_failed_by_the_run_that_resumed_them(seeded, scenarios):
    # The killed process could not close its runs; the next run of the same spec finds them (same host, pid
    # gone) and marks them: MLflow FAILED, Prefect Crashed, each with a note naming the resuming run. In the
    # chain each killed run is resumed by the next one (itself killed at the next point, after it marked them).
    from uuid import UUID

    from mlflow import MlflowClient
    from prefect import get_client

    data = scenarios["data"]["chain"]
    status = subprocess.run([SYNTHGEN, "--data-dir", str(data), "status", "--json"], env=seeded["env"],
                            capture_output=True, text=True, timeout=120)
    client = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_pid = {r.data.tags["synthgen.pid"]: r for r in runs}
    procs = [scenarios["killed"][p] for p, _, _ in KILL_POINTS] + [scenarios["last"]]
    assert len(runs) == len(procs) and set(by_pid) == {str(proc.pid) for proc in procs}  # one run per process
    resumed = json.loads((data / "result.json").read_text())
    assert by_pid[str(procs[-1].pid)].info.run_id == resumed["mlflow_run_id"]
    shown = {r["mlflow_run_id"]: r for r in json.loads(status.stdout)["runs"]}
    with get_client(sync_client=True) as prefect:
        for (point, _, _), proc, resumer in zip(KILL_POINTS, procs, procs[1:]):
            dead, by = by_pid[str(proc.pid)], by_pid[str(resumer.pid)].info.run_id
            assert dead.info.status == "FAILED", point
            assert by in dead.data.tags["synthgen.note"], point
            state = prefect.read_flow_run(UUID(dead.data.tags["prefect.flow_run_id"])).state
            assert state.is_crashed() and by in state.message, (point, state)
            # `synthgen status` shows each killed run failed, killed before its commit or after it
            assert shown[dead.info.run_id]["state"] == "FAILED" and "process died" in shown[dead.info.run_id]["note"]
        assert prefect.read_flow_run(UUID(resumed["prefect_flow_run_id"])).state.is_completed()
    assert status.returncode == 0, status.stderr[-3000:]
    assert shown[resumed["mlflow_run_id"]]["state"] == "FINISHED"
    assert "RUNNING" not in {r["state"] for r in shown.values()}


SIGNALS = [  # (failpoint action, exit status, the one line the run ends with)
    ("interrupt", 130, "interrupted; committed versions are intact, rerun the same command to resume"),
    ("terminate", 143, "terminated (SIGTERM); committed versions are intact, rerun the same command to resume"),
]


def test_ctrl_c_or_sigterm_stops_the_shards_in_flight_leaves_no_process_and_a_rerun_resumes(seeded):
    # Shards overlap (flows.executors.local) in worker threads, which signals do not reach: the executor
    # tells them to stop, and each stops at its next batch instead of finishing (and writing) its shard.
    # The run starts its own temporary Prefect server, as a user's does: Ctrl-C reaches the server too
    # (the terminal signals the whole process group) and SIGTERM used to leave it running.
    # A Ctrl-C'd run, then a SIGTERM'd one in the same folder (each leaves it as it found it: nothing
    # staged, no version), then a rerun.
    spec = job_spec()
    spec["generator"]["batch_size"] = 1  # 3 batches per shard: the signal lands inside shard 0
    job = seeded["root"] / "job-signals.yaml"
    job.write_text(yaml.safe_dump(spec))
    data = fresh(seeded, "signals")
    cmd = [SYNTHGEN, "--data-dir", str(data), "run", str(job), "--json", str(data / "result.json")]
    for action, code, message in SIGNALS:
        env = {**seeded["env"], "SYNTHGEN_FAILPOINT": f"sampling@1:{action}"}  # the signal after the first batch
        env.pop("PREFECT_API_URL")
        # As from a terminal: its own process group, and the default SIGINT disposition (a test runner started
        # in the background, as CI and `make test &` are, ignores SIGINT, and its children would inherit that).
        as_terminal = [sys.executable, "-c", "import os, signal, sys; os.setsid(); "
                       "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"]
        proc = subprocess.Popen(as_terminal + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == code, (action, stderr[-3000:])
        assert message in stderr and "Traceback" not in stderr, (action, stderr[-3000:])
        assert staged(data) == [], f"{action}: a shard in flight finished after the signal"
        assert not Catalog(data / "catalog").exists(DATASET) or Catalog(data / "catalog").head(DATASET) is None
        assert not group_alive(proc.pid), f"{action}: a process of the run (Prefect's temporary server?) outlived it"
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
