"""Close the runs of a job whose process died, when the job resumes.

A killed ``synthgen run`` leaves its MLflow run and its Prefect flow run in
state RUNNING: nothing was alive to close them. Each job's MLflow run
records the host, pid and process start time that own it. When the same
job spec starts again, every other RUNNING run of that spec whose process
is gone (same host: the pid is not running, or is a newer process) is
marked: the MLflow run FAILED, the Prefect flow run Crashed, both with a
note naming the run that resumed them. Runs owned by other hosts are left
alone: from here they cannot be told apart from live ones.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from flows.processes import is_alive, started
from flows.tracking import NOTE_TAG, Tracker

HOST_TAG, PID_TAG, STARTED_TAG = "synthgen.host", "synthgen.pid", "synthgen.pid_started"


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the owner of a run (host, pid, process start time)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid()), STARTED_TAG: started()}


def owner_is_gone(tags: dict[str, str]) -> bool:
    """Whether the process that owns a run (its owner tags) is known to be gone: same host only."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False  # another machine's run (or one that predates these tags): cannot tell
    return not is_alive(int(tags[PID_TAG]), tags.get(STARTED_TAG))


@dataclass(frozen=True)
class ClosedRun:
    """A run of a dead process that was marked failed."""

    mlflow_run_id: str
    prefect_flow_run_id: str | None


def close_dead_runs(tracker: Tracker, job_digest: str, prefect_flow_run_id: str) -> list[ClosedRun]:
    """Mark the RUNNING runs of ``job_digest`` whose process died as failed (MLflow) and crashed (Prefect)."""
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`synthgen.job_digest` = '{job_digest}' AND attributes.status = 'RUNNING'",
    )
    note = f"process died; resumed by MLflow run {tracker.run_id} (Prefect flow run {prefect_flow_run_id})"
    closed = []
    for run in runs:
        if run.info.run_id == tracker.run_id or not owner_is_gone(run.data.tags):
            continue
        tracker.client.set_tag(run.info.run_id, NOTE_TAG, note)
        tracker.client.set_terminated(run.info.run_id, status="FAILED")
        closed.append(ClosedRun(run.info.run_id, run.data.tags.get("prefect.flow_run_id")))
    _crash_flow_runs([c.prefect_flow_run_id for c in closed if c.prefect_flow_run_id], note)
    return closed


def _crash_flow_runs(flow_run_ids: list[str], note: str) -> None:
    """Set each Prefect flow run still Running to Crashed, with ``note`` as its message."""
    if not flow_run_ids:
        return
    from uuid import UUID

    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        for run_id in flow_run_ids:
            try:
                run = client.read_flow_run(UUID(run_id))
            except ObjectNotFound:  # recorded by another Prefect server than this one
                continue
            if run.state is not None and not run.state.is_final():
                client.set_flow_run_state(UUID(run_id), Crashed(message=note), force=True)
