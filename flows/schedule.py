"""Scheduled jobs: Prefect deployments of the generation flow on a work pool.

A schedule is a deployment of ``flows.generate.generate_dataset`` whose
parameters are the job spec (as a dict) and the data folder, with a cron
schedule, on a work pool served by ``prefect worker start --pool NAME``
processes (one per GPU machine). Cron schedules never fire on the temporary
server a plain run starts, so every function here needs ``PREFECT_API_URL``
pointing at a long-lived ``prefect server start``.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from dataclasses import dataclass

from flows.settings import Settings
from synthgen.spec import JobSpec

ENTRYPOINT = "flows.generate.generate_dataset"  # a module path: workers import it from their installed synthgen
TAG = "synthgen"


class ScheduleError(RuntimeError):
    """Scheduling is not possible as configured (no server, no pool...)."""


def require_server() -> str:
    """The configured Prefect API URL, or a clear error saying how to get one."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    if not url:
        raise ScheduleError(
            "scheduling needs a long-lived Prefect server (cron never fires on the temporary one):\n"
            "  prefect server start --host 127.0.0.1 --port 4200   # use Postgres in production\n"
            "  export PREFECT_API_URL=http://127.0.0.1:4200/api\n"
            "  prefect work-pool create gpu --type process && prefect worker start --pool gpu"
        )
    return url


@dataclass
class ScheduleInfo:
    name: str
    deployment_id: str
    cron: str | None
    pool: str | None
    next_runs: list[str]
    dataset: str | None


def check_cron(cron: str) -> None:
    """Refuse a cron expression Prefect would not take (``ScheduleError``), before anything is registered."""
    from prefect.client.schemas.schedules import CronSchedule  # prefect on demand: `synthgen --help` stays fast
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError:
        raise ScheduleError(f"--cron {cron!r}: not a cron expression; use five fields, e.g. '0 2 * * *' "
                            "(02:00 daily)") from None


def schedule(spec: JobSpec, data_dir: str, cron: str | None, pool: str, name: str | None = None,
             shard_pool: str | None = None, catalog_url: str | None = None) -> str:
    """Register (or update) a deployment of the job; returns its id.

    ``shard_pool``: run the job's shards as flow runs on that pool
    (``flows.executors.prefect_pool``) instead of inside the job's own flow run.
    ``catalog_url``: the job's catalog is on object storage; the worker that runs
    the job then uses its own data folder (no path of this machine travels).
    """
    require_server()
    # The deployment carries the settings it was scheduled with, not the worker's environment.
    settings = Settings()
    if catalog_url:
        settings, data_dir = settings.model_copy(update={"catalog": catalog_url, "data": None}), None
    params = {"spec": spec.model_dump(mode="json"), "data_dir": data_dir, "settings": settings.model_dump(mode="json")}
    if shard_pool:
        params["shard_pool"] = shard_pool
    return deploy(ENTRYPOINT, name or spec.name, pool, params, [TAG, f"dataset:{spec.output.dataset}"], cron)


def deploy(entrypoint: str, name: str, pool: str, parameters: dict | None = None, tags: list[str] | None = None,
           cron: str | None = None) -> str:
    """Register (or update) a deployment of the flow at ``entrypoint`` on ``pool`` (created if missing).

    ``entrypoint`` is a module path (``flows.generate.generate_dataset``): a worker imports the flow from
    the synthgen it has installed (a wheel, an image), with no checkout, pull step or shared path.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.importtools import import_object

    ensure_pool(pool)
    flow = import_object(entrypoint)
    schedules = [DeploymentScheduleCreate(schedule=CronSchedule(cron=cron))] if cron else []
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow.name)
        # Creating a deployment that exists (same flow, same name) updates it, schedules included.
        deployment_id = client.create_deployment(
            flow_id, name, entrypoint=entrypoint, work_pool_name=pool, parameters=parameters or {},
            tags=tags or [], schedules=schedules, pull_steps=[], parameter_openapi_schema=parameter_schema(flow).model_dump(),
            enforce_parameter_schema=False)
    return str(deployment_id)


def ensure_pool(pool: str) -> None:
    """Create ``pool`` as a process work pool unless it exists."""

    async def run() -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectNotFound

        async with get_client() as client:
            try:
                await client.read_work_pool(pool)
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))

    asyncio.run(run())


def list_schedules() -> list[ScheduleInfo]:
    """synthgen deployments with their cron, pool and next scheduled runs."""
    require_server()

    async def run() -> list[ScheduleInfo]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

        async with get_client() as client:
            deps = await client.read_deployments(
                deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[TAG]))
            )
            out = []
            for d in deps:
                crons = [getattr(s.schedule, "cron", None) for s in d.schedules or []]
                runs = await client.get_scheduled_flow_runs_for_deployments([d.id], limit=NEXT_RUNS)
                # Prefect's scheduler creates the scheduled runs some time after a deployment is made:
                # the cron itself says when the next ones are due, from the moment it is registered.
                due = {r.expected_start_time for r in runs if r.expected_start_time is not None}
                if not d.paused:
                    for s in d.schedules or []:
                        if s.active and getattr(s.schedule, "cron", None):
                            due.update(await next_cron_times(s.schedule.cron, s.schedule.timezone, s.schedule.day_or))
                dataset = next((t.split(":", 1)[1] for t in d.tags if t.startswith("dataset:")), None)
                out.append(ScheduleInfo(d.name, str(d.id), next((c for c in crons if c), None),
                                        d.work_pool_name, [_when(t) for t in sorted(due)[:NEXT_RUNS]], dataset))
            return out

    return asyncio.run(run())


NEXT_RUNS = 3  # next run times shown per schedule


async def next_cron_times(cron: str, timezone: str | None = None, day_or: bool = True, n: int = NEXT_RUNS,
                    start: datetime.datetime | None = None) -> list[datetime.datetime]:
    """The next ``n`` times ``cron`` fires at or after ``start`` (default now), by Prefect's own cron schedule.

    The same code Prefect's scheduler uses (``prefect.server.schemas.schedules``),
    so the times shown are the times runs will be created for.
    """
    from prefect.server.schemas.schedules import CronSchedule

    start = start or datetime.datetime.now(datetime.timezone.utc)
    schedule = CronSchedule(cron=cron, timezone=timezone or "UTC", day_or=day_or)
    # Prefect's dates may start before `start` across a DST change; a time already past is not "next".
    return [t for t in await schedule.get_dates(n=n, start=start) if t >= start]


def _when(t: datetime.datetime) -> str:
    """A run time in UTC, to the second: what a user compares with a clock or a log."""
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def unschedule(name: str) -> None:
    """Delete the deployment ``generate_dataset/<name>`` (or ``synthgen-generate/<name>``)."""
    require_server()

    async def run() -> None:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            dep = await client.read_deployment_by_name(f"synthgen-generate/{name}")
            await client.delete_deployment(dep.id)

    asyncio.run(run())
