"""Scale-out: a job's shards run as flow runs on a Prefect work pool, one GPU each.

``PrefectPoolExecutor(pool)`` registers the shard flow below as the
deployment ``synthgen-shard/<pool>``, submits one flow run per shard and
hands the shards back to the driver in plan order as their runs complete.
Each GPU machine runs ``prefect worker start --pool gpu``; a shard run
calls the same shard step as every executor and stages its rows in the
job's staging folder (``flows.job.staging``) for the driver to decide, so
sharding never changes a byte of the result. Staged shards are written a
second time by the decision (bytes written / final ~2; the in-process and
device executors write once).

Which GPUs a worker owns comes from ``$SYNTHGEN_GPUS`` (else
``$CUDA_VISIBLE_DEVICES``). A shard run holds a Prefect global concurrency
slot ``gpu-<host>-<gpu>`` (limit 1, created if missing) while it works and
pins itself to that GPU, so two shards never share a GPU, whichever workers
or jobs they come from. A worker that names no GPU holds ``host-<host>``:
one shard at a time on that machine.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, StateType
from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
from prefect.concurrency.sync import concurrency
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound, PrefectHTTPStatusError
from prefect.runtime import flow_run

from catalog import Catalog, RunRef
from catalog.schema import samples_to_table
from catalog.storage import Storage
from flows.executors.base import Retry, ShardFailed, with_retries
from flows.executors.lost_runs import ensure_lost_run_automation, heartbeat_env, heartbeat_tag
from flows.job.components import ComponentLoader, Setup
from flows.job.shard_step import ShardReport, ShardResult, ShardStep
from flows.job.staging import Staging
from flows.schedule import TAG, deploy, require_server
from flows.settings import Settings, configure
from synthgen.plan import Shard, make_shards, shard_from_record, shard_record
from synthgen.spec import JobSpec, parse_spec

SHARD_FLOW = "synthgen-shard"
ENTRYPOINT = "flows.executors.prefect_pool.generate_shard_flow"  # a module path: no checkout on the workers
GPUS_ENV = "SYNTHGEN_GPUS"  # "0,1": the GPUs this worker owns
HOST_ENV = "SYNTHGEN_HOST"  # the host part of slot names (containers on one machine must share it)
POLL_S = 2.0
DRIVER_ALIVE_EVERY_S = 600.0  # how often a waiting driver refreshes its record in the job's staging
# Where the worker's synthgen is installed (recorded per shard: a fleet with mixed installs shows which ran it).
INSTALLED_AT = Path(__file__).resolve().parents[2]


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


# Builds a worker's components from the job and its catalog root (default: the models the spec names).
SetupFactory = Callable[[JobSpec, str], Setup]


@flow(name=SHARD_FLOW, log_prints=True)
def generate_shard_flow(spec: dict, shard_index: int, data_dir: str | None, runs: dict,
                        settings: Settings | None = None, plan_slice: dict | None = None) -> dict:
    """Stage one shard of a job on this worker while holding a GPU slot; the job's driver decides it.

    ``settings``: the job's (its retry policy); which GPUs this worker owns is the worker's own fact.
    ``plan_slice``: the shard with its round (``synthgen.plan.shard_record``); without it, shard
    ``shard_index`` of the plan's first round.
    """
    return stage_shard(spec, shard_index, data_dir, runs, settings, plan_slice)


def stage_shard(spec: dict, shard_index: int, data_dir: str | None, runs: dict, settings: Settings | None = None,
                plan_slice: dict | None = None, setup_of: SetupFactory = ComponentLoader) -> dict:
    """The shard flow's body; ``setup_of`` builds the components (a benchmark's flow passes a simulated GPU)."""
    job = parse_spec(spec)
    settings = settings or Settings()
    paths = configure(data_dir, settings)  # at a URL: this worker's own data folder ($SYNTHGEN_DATA, else ./)
    shard = shard_from_record(plan_slice) if plan_slice else make_shards(job.total_images, job.output.shard_size)[shard_index]
    pinned = [d for d in (job.generator.device, job.embedder.device) if d.startswith("cuda:") and d != "cuda:0"]
    if pinned and owned_gpus():
        raise ValueError(f"device {pinned[0]!r}: on a worker a shard sees only the GPU it holds, as cuda:0; "
                         "use device 'cuda' or 'auto' in the spec")
    store = Catalog(paths.catalog, cache=paths.cache).storage if paths.catalog_is_url else None
    staging = Staging.of(paths, job, store)
    step = ShardStep(job, RunRef(**runs))
    with device_slot() as slot:
        held_from = time.time()
        parts = setup_of(job, str(paths.catalog))()
        result = with_retries(lambda: step(shard, parts), shard,
                              Retry(settings.shard_retries, tuple(settings.retry_delays)))
        staging.stage(shard, samples_to_table(result.samples))
        record = {**asdict(result.report), **slot, "held_from": held_from, "held_until": time.time(),
                  "pid": os.getpid(), "flow_run_id": str(flow_run.id), "installed_at": str(INSTALLED_AT)}
    get_run_logger().info(f"{shard.name}: {result.report.rows} rows on {slot['slot']}")
    staging.write_run_record(shard, record)
    return record


def deployment_name(pool: str) -> str:
    """The shard deployment that serves ``pool``."""
    return f"{SHARD_FLOW}/{pool}"


def deploy_shard_flow(pool: str, entrypoint: str = ENTRYPOINT) -> str:
    """(Re)register the shard flow on ``pool``; workers import it from the synthgen they have installed."""
    require_server()
    return deploy(entrypoint, pool, pool, tags=[TAG, "shard"])


def guard_lost_runs(heartbeat_s: int, log) -> None:
    """Keep the automation that crashes shard runs whose machine died (``lost_runs``); warn if the server refuses."""
    try:
        ensure_lost_run_automation(heartbeat_s)
    except PrefectHTTPStatusError as exc:  # e.g. an account without automations: the job runs, unguarded
        log.warning(f"could not keep the automation that crashes shard runs of dead machines ({exc}); a machine "
                    "that dies leaves its shard runs Running until they are cancelled (prefect flow-run cancel ID)")


@dataclass
class PrefectPoolExecutor:
    """Shards as flow runs on the work pool ``pool``.

    With the catalog in a folder, ``data_dir`` must be one every worker reaches (the same path on each).
    With the catalog at a URL (``store``: its storage), workers stage shards on that store and use their own
    data folders: no path is shared.
    """

    pool: str
    data_dir: str
    settings: Settings = field(default_factory=Settings)
    store: Storage | None = None
    entrypoint: str = ENTRYPOINT  # the shard flow's module path (a benchmark deploys one with a simulated GPU)
    records: list[dict] = field(default_factory=list)  # what each shard run recorded (host, GPU slot, times)

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]:
        """Submit every shard, then hand each back (staged, ``samples=None``) in plan order as its run completes.

        A shard whose run died (its process killed, its machine gone silent
        (``lost_runs``) or the run cancelled: Crashed, Cancelled, deleted) is submitted
        again, up to ``settings.shard_retries`` times, to whichever worker
        takes it. A run that Failed raised after the shard step's own retries
        on its worker, so it is not submitted again. A shard that does not
        complete raises ``ShardFailed`` naming it; the shards that did stay
        staged for a rerun.
        """
        log = get_run_logger()
        deploy_shard_flow(self.pool, self.entrypoint)
        heartbeat_s = self.settings.shard_heartbeat_s
        guard_lost_runs(heartbeat_s, log)
        job = step.spec
        # At a URL a worker keeps its own data folder: neither the path nor the setting travels.
        data_dir, settings = ((None, self.settings.model_copy(update={"data": None})) if self.store is not None
                              else (self.data_dir, self.settings))
        runs = ShardRuns()

        def submit(s: Shard) -> None:
            attempt = runs.attempts.get(s.index, -1) + 1
            again = f"-retry-{attempt}" if attempt else ""
            fr = run_deployment(
                deployment_name(self.pool),
                parameters={"spec": job.model_dump(mode="json"), "shard_index": s.index, "data_dir": data_dir,
                            "runs": step.runs.model_dump(), "settings": settings.model_dump(mode="json"),
                            "plan_slice": shard_record(s)},
                timeout=0,  # submit only; the loop below waits for all of them together
                flow_run_name=f"{job.name}-{s.name}{again}",
                idempotency_key=f"{step.runs.prefect_flow_run_id}:{s.name}{again}",
                tags=[TAG, f"dataset:{job.output.dataset}", heartbeat_tag(heartbeat_s)],
                job_variables={"env": heartbeat_env(heartbeat_s)},  # per run: jobs may differ
            )
            runs.add(str(fr.id), s, attempt)

        for s in shards:
            submit(s)
        log.info(f"{job.name}: {len(shards)} shard runs on pool {self.pool!r}")
        staging = Staging.of(self.settings.paths(self.data_dir), job, self.store)

        alive_at = 0.0

        def poll() -> None:
            nonlocal alive_at
            if time.time() - alive_at > DRIVER_ALIVE_EVERY_S:  # gc keeps a staging with a young object
                alive_at = time.time()
                staging.mark_driver_alive({"host": socket.gethostname(), "pid": os.getpid(), "at": alive_at})
            for run_id, state in poll_flow_runs(runs.waiting(), log).items():
                runs.states[run_id] = state
                s = runs.shard_of[run_id]
                if runs.current[s.index] == run_id and died(state) \
                        and runs.attempts[s.index] < self.settings.shard_retries:
                    log.warning(f"{s.name}: flow run {run_id} ended {state.type.value if state else 'deleted'}; "
                                f"submitted again ({runs.attempts[s.index] + 1} of {self.settings.shard_retries})")
                    submit(s)

        for s in shards:
            while runs.current[s.index] not in runs.states:
                poll()
            state = runs.states[runs.current[s.index]]
            if state is None or not state.is_completed():
                while runs.waiting():  # a failure is reported with all the others that failed
                    poll()
                raise ShardFailed(f"shard run(s) on pool {self.pool!r} failed: " + "; ".join(runs.failures()))
            record = staging.read_run_record(s)
            if record is None:  # its run completed, so something removed what it staged
                raise ShardFailed(f"{s.name}: its run completed but its staged rows are gone from the job's staging "
                                  "(removed by `synthgen gc --older-than` while the job ran?); run the job again")
            self.records.append(record)
            yield ShardResult(ShardReport(record["shard"], record["rows"], False, record["sampling_s"],
                                          record["wall_s"], record["pid"], record.get("device")))


@dataclass
class ShardRuns:
    """A job's shard flow runs: each shard's latest run and attempt, and every run's final state once over."""

    shard_of: dict[str, Shard] = field(default_factory=dict)  # run id -> shard
    current: dict[int, str] = field(default_factory=dict)  # shard index -> its latest run id
    attempts: dict[int, int] = field(default_factory=dict)  # shard index -> retries submitted
    states: dict = field(default_factory=dict)  # run id -> final state (None: deleted)

    def add(self, run_id: str, shard: Shard, attempt: int) -> None:
        """Record ``run_id`` as ``shard``'s latest run (attempt 0: its first)."""
        self.shard_of[run_id], self.current[shard.index], self.attempts[shard.index] = shard, run_id, attempt

    def waiting(self) -> list[str]:
        """Runs not over yet."""
        return [i for i in self.shard_of if i not in self.states]

    def failures(self) -> list[str]:
        """One line per shard whose latest run did not complete, in plan order."""
        latest = {run_id: self.shard_of[run_id] for run_id in self.current.values()}
        return failures(latest, self.states)


def died(state) -> bool:
    """Whether a finished run's process died or was stopped (worth another process), not a shard that raised."""
    return state is None or state.type in (StateType.CRASHED, StateType.CANCELLED, StateType.CANCELLING)


def failures(submitted: dict[str, Shard], states: dict) -> list[str]:
    """One line per shard whose run did not complete, in plan order."""
    out = []
    for run_id, s in submitted.items():
        state = states[run_id]
        if state is None or not state.is_completed():
            what = f"{state.type.value} {state.message or ''}".strip() if state else "deleted"
            out.append(f"{s.name} (plan [{s.start}:{s.stop})) flow run {run_id}: {what}")
    return out


def poll_flow_runs(ids: list[str], log=None, poll_s: float = POLL_S) -> dict:
    """The flow runs in ``ids`` that are over, by id, after waiting ``poll_s`` when none is (None: deleted).

    Over means final, or being cancelled: a run whose machine died is stuck
    in ``Cancelling`` after a cancel (no worker is left to finish it), and
    the job must not wait for it forever.
    """
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
    over = {str(r.id): r.state for r in runs
            if r.state and (r.state.is_final() or r.state.type == StateType.CANCELLING)}
    over |= {gone: None for gone in set(ids) - {str(r.id) for r in runs}}
    if not over:
        late = sum(1 for r in runs if r.state and r.state.name == "Late")
        if log and late:
            log.info(f"shard runs: {late} late (is a worker running on the pool?)")
        time.sleep(poll_s)
    return over
