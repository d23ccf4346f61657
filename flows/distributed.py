"""Scale-out: a job's shards run as flow runs on a work pool, one GPU each.

``generate_dataset(..., shard_pool="gpu")`` registers the shard flow below as
the deployment ``synthgen-shard/gpu``, submits one flow run per shard that is
not staged yet, waits for them, and then commits in its own process as
always. Each GPU machine runs ``prefect worker start --pool gpu``; a shard
run stages its Parquet in the shared data folder through the same task the
in-process path uses (``flows.tasks.generate_shard_task``), so sharding
never changes a byte of the result.

Which GPUs a worker owns comes from ``$SYNTHGEN_GPUS`` (else
``$CUDA_VISIBLE_DEVICES``). A shard run holds a Prefect global concurrency
slot ``gpu-<host>-<gpu>`` (limit 1, created if missing) while it works and
pins itself to that GPU, so two shards never share a GPU, whichever workers
or jobs they come from. A worker that names no GPU holds ``host-<host>``:
one shard at a time on that machine.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from catalog import RunRef
from catalog.store import atomic_write
from flows.models import get_embedder
from flows.schedule import TAG, deploy, require_server
from flows.settings import Paths, Settings, configure
from flows.decide import read_decision
from flows.shard import ShardReport, staging_dir
from flows.tasks import ShardFailed, shard_task_with_policy
from synthgen.plan import Shard, make_shards
from synthgen.spec import JobSpec, parse_spec

SHARD_FLOW = "synthgen-shard"
ENTRYPOINT = "flows/distributed.py:generate_shard_flow"
GPUS_ENV = "SYNTHGEN_GPUS"  # "0,1": the GPUs this worker owns
HOST_ENV = "SYNTHGEN_HOST"  # the host part of slot names (containers on one machine must share it)
POLL_S = 2.0


# -- on the worker -------------------------------------------------------------
def owned_gpus() -> list[str]:
    """GPU ids this worker may use: ``$SYNTHGEN_GPUS``, else ``$CUDA_VISIBLE_DEVICES``, else none."""
    value = os.environ.get(GPUS_ENV) or os.environ.get("CUDA_VISIBLE_DEVICES") or ""
    return [g.strip() for g in value.split(",") if g.strip() and g.strip() != "-1"]


def worker_host() -> str:
    """This machine's name in slot names: ``$SYNTHGEN_HOST``, else the hostname."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def slot_names(host: str) -> list[tuple[str | None, str]]:
    """(gpu, global concurrency limit name) for each GPU this worker owns, or one per-host slot."""
    return [(g, f"gpu-{host}-{g}") for g in owned_gpus()] or [(None, f"host-{host}")]


def free_slots(names: list[str]) -> list[str]:
    """Those of the global concurrency limits ``names`` with a free slot now.

    A missing limit is created with one slot (an admin may raise it, e.g.
    for a GPU that fits two shards); a disabled one limits nothing.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    free = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                gcl = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                try:
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
                except ObjectAlreadyExists:  # another shard run created it first
                    pass
                gcl = client.read_global_concurrency_limit_by_name(name)
            if not gcl.active or gcl.active_slots < gcl.limit:
                free.append(name)
    return free


class _QuietRefusals(logging.Filter):
    """Drop Prefect's error log for a refused non-blocking slot try (``max_retries=0``): we handle it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        refused = (len(args) == 2 and args[0] == "ConcurrencySlotAcquisitionWithLeaseService"
                   and isinstance(args[1], tuple) and len(args[1]) > 3 and args[1][3] == 0)
        return not refused


_quiet = _QuietRefusals()


def _try_hold(stack: ExitStack, name: str, holder) -> bool:
    """Take a slot of ``name`` into ``stack`` if one is free now; False if all are taken."""
    from prefect.concurrency.sync import concurrency
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    logging.getLogger("prefect._internal.concurrency").addFilter(_quiet)  # once: filters are a set
    try:
        stack.enter_context(concurrency(name, occupy=1, max_retries=0, holder=holder))
        return True
    except ConcurrencySlotAcquisitionError as exc:
        if getattr(getattr(exc.__cause__, "response", None), "status_code", None) == 423:  # locked: in use
            return False
        raise


@contextmanager
def device_slot() -> Iterator[dict]:
    """Hold a free GPU of this worker (or the host) for the block and pin the process to it.

    Polls the owned GPUs' limits and takes a free one, so a worker that
    owns several GPUs never queues behind a busy one. The slot
    is a lease the process renews: a killed shard run frees it when the
    lease expires (5 minutes).
    """
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder

    host = worker_host()
    slots = slot_names(host)
    holder = ConcurrencyLeaseHolder(type="flow_run", id=flow_run.id) if flow_run.id else None
    with ExitStack() as stack:
        while True:
            free = free_slots([name for _, name in slots])
            for gpu, name in slots:
                if name in free and _try_hold(stack, name, holder):
                    if gpu is not None:
                        # Before anything touches CUDA: the model then sees only this GPU, as cuda:0.
                        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
                    yield {"host": host, "gpu": gpu, "slot": name}
                    return
            time.sleep(POLL_S)


def run_record_path(paths: Paths, spec: JobSpec, shard: Shard) -> Path:
    """Where a shard run leaves its report (next to the staged shard, on the shared disk)."""
    return staging_dir(paths, spec) / f"{shard.name}.run.json"


@flow(name=SHARD_FLOW, log_prints=True)
def generate_shard_flow(spec: dict, shard_index: int, data_dir: str, runs: dict,
                        settings: Settings | None = None) -> dict:
    """Stage one shard of a job on this worker while holding a GPU slot; the job's flow commits.

    ``settings``: the job's (its retry policy); which GPUs this worker owns is the worker's own fact.
    """
    job = parse_spec(spec)
    settings = settings or Settings()
    paths = configure(data_dir, settings)
    shard = make_shards(job.total_images, job.output.shard_size)[shard_index]
    pinned = [d for d in (job.generator.device, job.embedder.device) if d.startswith("cuda:") and d != "cuda:0"]
    if pinned and owned_gpus():
        raise ValueError(f"device {pinned[0]!r}: on a worker a shard sees only the GPU it holds, as cuda:0; "
                         "use device 'cuda' or 'auto' in the spec")
    with device_slot() as slot:
        held_from = time.time()
        report = shard_task_with_policy(settings)(job, shard, paths, RunRef(**runs))
        record = {**asdict(report), **slot, "held_from": held_from, "held_until": time.time(),
                  "pid": os.getpid(), "flow_run_id": str(flow_run.id)}
    get_run_logger().info(f"{shard.name}: {report.rows} rows on {slot['slot']}")
    atomic_write(run_record_path(paths, job, shard), json.dumps(record).encode())
    return record


# -- in the job's flow ---------------------------------------------------------
def deployment_name(pool: str) -> str:
    """The shard deployment that serves ``pool``."""
    return f"{SHARD_FLOW}/{pool}"


def deploy_shard_flow(pool: str) -> str:
    """(Re)register the shard flow on ``pool`` from this checkout (workers need it at the same path)."""
    require_server()
    return deploy(ENTRYPOINT, pool, pool, tags=[TAG, "shard"])


def run_on_workers(job: JobSpec, shards: list[Shard], paths: Paths, runs: RunRef,
                   pool: str, settings: Settings | None = None) -> tuple[list[ShardReport], list[dict]]:
    """Generate ``shards`` as flow runs on ``pool`` and wait for all of them.

    Shards already staged (by a crashed earlier run) are reused without a
    flow run. Returns the shard reports in plan order and what each shard
    run recorded (host, GPU slot, times). Raises ``ShardFailed`` naming
    every shard whose run did not complete; the others stay staged.
    """
    from prefect.deployments import run_deployment

    log = get_run_logger()
    deploy_shard_flow(pool)
    reports: dict[int, ShardReport] = {}
    submitted: dict[str, Shard] = {}
    for s in shards:
        staged = staging_dir(paths, job) / f"{s.name}.parquet"
        decided = read_decision(staging_dir(paths, job), s)
        if decided is not None or staged.is_file():  # decided, or staged undecided, by an earlier run
            rows = sum(decided.counts.values()) if decided else pq.read_metadata(staged).num_rows
            reports[s.index] = ShardReport(s.index, rows, reused=True)
            continue
        fr = run_deployment(
            deployment_name(pool),
            parameters={"spec": job.model_dump(mode="json"), "shard_index": s.index,
                        "data_dir": str(paths.root), "runs": runs.model_dump(),
                        "settings": (settings or Settings()).model_dump(mode="json")},
            timeout=0,  # submit only; the loop below waits for all of them together
            flow_run_name=f"{job.name}-{s.name}",
            idempotency_key=f"{runs.prefect_flow_run_id}:{s.name}",
            tags=[TAG, f"dataset:{job.output.dataset}"],
        )
        submitted[str(fr.id)] = s
    log.info(f"{job.name}: {len(submitted)} shard runs on pool {pool!r}, {len(reports)} shards already staged")
    prefetch_embedder(job)  # the commit needs it; load it while the workers generate
    failed = []
    states = wait_for_flow_runs(list(submitted), log)
    for run_id, s in submitted.items():  # in plan order
        state = states[run_id]
        if state is None or not state.is_completed():
            what = f"{state.type.value} {state.message or ''}".strip() if state else "deleted"
            failed.append(f"{s.name} (plan [{s.start}:{s.stop})) flow run {run_id}: {what}")
    if failed:
        raise ShardFailed(f"{len(failed)} shard run(s) on pool {pool!r} failed: " + "; ".join(failed))
    records = [json.loads(run_record_path(paths, job, s).read_text()) for s in submitted.values()]
    for r in records:
        reports[r["shard"]] = ShardReport(r["shard"], r["rows"], r["reused"], r["sampling_s"], r["wall_s"])
    return [reports[s.index] for s in shards], sorted(records, key=lambda r: r["shard"])


def prefetch_embedder(job: JobSpec) -> None:
    """Load the job's embedder in a background thread; a failure is raised again by the commit's own load."""

    def load() -> None:
        try:
            get_embedder(job)
        except Exception:  # noqa: BLE001 - the commit loads it again and reports the error there
            pass

    threading.Thread(target=load, name="synthgen-embedder", daemon=True).start()


def wait_for_flow_runs(ids: list[str], log=None, poll_s: float = POLL_S) -> dict:
    """Poll until every flow run in ``ids`` is over; their last states by id (None: deleted).

    Over means final, or being cancelled: a run whose machine died is stuck
    in ``Cancelling`` after a cancel (no worker is left to finish it), and
    the job must not wait for it forever.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.objects import StateType

    done: dict = {}
    last_report = 0.0
    with get_client(sync_client=True) as client:
        while len(done) < len(ids):
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
            for r in runs:
                if r.state and (r.state.is_final() or r.state.type == StateType.CANCELLING):
                    done.setdefault(str(r.id), r.state)
            for gone in set(ids) - {str(r.id) for r in runs}:
                done.setdefault(gone, None)
            if log and (time.time() - last_report > 60 or len(done) == len(ids)):
                late = sum(1 for r in runs if r.state and r.state.name == "Late")
                log.info(f"shard runs: {len(done)}/{len(ids)} finished"
                         + (f"; {late} late (is a worker running on the pool?)" if late else ""))
                last_report = time.time()
            if len(done) < len(ids):
                time.sleep(poll_s)
    return done
