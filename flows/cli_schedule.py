"""`synthgen` commands for scheduled jobs and their status (Prefect deployments, MLflow runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from flows.cli_common import _paths, app, failing_on, out


@app.command()
def status(limit: int = typer.Option(10, help="How many recent runs.")) -> None:
    """Recent and running jobs: MLflow run, state, dataset version, counts."""
    from datetime import datetime

    from flows.tracking import EXPERIMENT, Tracker

    paths = _paths()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    t = Table(title=f"recent jobs ({EXPERIMENT} experiment, {paths.tracking_uri})")
    for col in ("started", "job", "state", "dataset", "generated", "kept", "seconds", "MLflow run", "Prefect flow run"):
        t.add_column(col, overflow="fold")
    for r in runs:
        m, tags = r.data.metrics, r.data.tags
        started = datetime.fromtimestamp(r.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(started, r.info.run_name or "-", r.info.status, tags.get("synthgen.dataset", "-"),
                  f"{m.get('generated', 0):.0f}", f"{m.get('kept', 0):.0f}", f"{m.get('wall_s', 0):.1f}",
                  r.info.run_id, tags.get("prefect.flow_run_id", "-"))
    out.print(t)


@app.command("schedule")
def schedule_cmd(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    cron: Optional[str] = typer.Option(None, help="Cron schedule, e.g. '0 2 * * *' (none: run on demand)."),
    pool: str = typer.Option("synthgen", help="Prefect work pool (created as a process pool if missing)."),
    name: Optional[str] = typer.Option(None, help="Deployment name (default: the job's name)."),
    shards_on: Optional[str] = typer.Option(
        None, "--shards-on", help="Generate the shards on this work pool's workers (one GPU each; docs/scale-out.md)."),
) -> None:
    """Register a job as a Prefect deployment with a cron schedule (needs `prefect server start`)."""
    from flows.schedule import ScheduleError, schedule
    from synthgen.spec import SpecError, load_spec

    with failing_on(SpecError, ScheduleError):
        job = load_spec(spec)
        dep = schedule(job, str(_paths().root), cron, pool, name, shard_pool=shards_on)
    out.print(f"scheduled {name or job.name} (deployment {dep}) on pool {pool!r}" + (f", cron {cron!r}" if cron else ""))
    out.print(f"start a worker where it should run:  prefect worker start --pool {pool}")
    if shards_on:
        out.print(f"and one per GPU machine:  SYNTHGEN_GPUS=0 prefect worker start --pool {shards_on} --limit 1")


@app.command()
def schedules() -> None:
    """List scheduled jobs with their next run times."""
    from flows.schedule import ScheduleError, list_schedules

    with failing_on(ScheduleError):
        items = list_schedules()
    t = Table(title="synthgen schedules")
    for col in ("name", "cron", "pool", "dataset", "next runs", "deployment"):
        t.add_column(col, overflow="fold")
    for s in items:
        t.add_row(s.name, s.cron or "-", s.pool or "-", s.dataset or "-", "\n".join(s.next_runs) or "-", s.deployment_id)
    out.print(t)


@app.command()
def unschedule(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Remove a scheduled job."""
    from flows.schedule import ScheduleError, unschedule as run_unschedule

    with failing_on(ScheduleError):
        run_unschedule(name)
    out.print(f"removed schedule {name}")
