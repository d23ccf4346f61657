"""`synthgen` commands for scheduled jobs and their status (Prefect deployments, MLflow runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import JSON_HELP, SCHEDULE, cli_paths, app, failing_on, print_json
from flows.cli.output import print_rows, say


@app.command(rich_help_panel=SCHEDULE)
def status(
    limit: int = typer.Option(10, min=1, help="How many recent runs."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recent and running jobs: MLflow run, state, dataset version, counts; runs whose process died say so."""
    from datetime import datetime

    from flows.dead_runs import HOST_TAG, PID_TAG, owner_is_gone
    from flows.tracking import EXPERIMENT, NOTE_TAG, Tracker

    paths = cli_paths()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    rows = []
    for r in runs:
        m, tags = r.data.metrics, r.data.tags
        state, note = r.info.status, tags.get(NOTE_TAG)
        # A killed run stays RUNNING in MLflow until its job reruns (flows.dead_runs marks it then); on its own
        # host the owner's pid tells now. Shown, not written: status only reads.
        if state == "RUNNING" and owner_is_gone(tags):
            state = "DIED"
            note = (f"process {tags.get(PID_TAG)} on {tags.get(HOST_TAG)} is gone; rerun the same job to resume "
                    "(that marks this run FAILED)")
        rows.append({
            "started": datetime.fromtimestamp(r.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S"),
            "job": r.info.run_name, "state": state, "mlflow_state": r.info.status,
            "dataset": tags.get("synthgen.dataset"),
            "generated": int(m.get("generated", 0)), "kept": int(m.get("kept", 0)), "seconds": m.get("wall_s"),
            "mlflow_run_id": r.info.run_id, "prefect_flow_run_id": tags.get("prefect.flow_run_id"),
            "note": note,
        })
    if as_json:
        return print_json({"tracking_uri": paths.tracking_uri, "experiment": EXPERIMENT, "runs": rows})
    print_rows(f"recent jobs ({EXPERIMENT} experiment, {paths.tracking_uri})",
               ("started", "job", "state", "dataset", "generated", "kept", "seconds", "MLflow run", "Prefect flow run",
                "note"),
               [(r["started"], r["job"], r["state"], r["dataset"], r["generated"], r["kept"], f"{r['seconds'] or 0:.1f}",
                 r["mlflow_run_id"], r["prefect_flow_run_id"], r["note"] or "") for r in rows])


@app.command("schedule", rich_help_panel=SCHEDULE)
def schedule_cmd(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    cron: Optional[str] = typer.Option(None, help="Cron schedule, e.g. '0 2 * * *' (none: run on demand)."),
    pool: str = typer.Option("synthgen", help="Prefect work pool (created as a process pool if missing)."),
    name: Optional[str] = typer.Option(None, help="Deployment name (default: the job's name)."),
    shards_on: Optional[str] = typer.Option(
        None, "--shards-on", help="Generate the shards on this work pool's workers (one GPU each; docs/scale-out.md)."),
) -> None:
    """Register a job as a Prefect deployment with a cron schedule (needs `prefect server start`)."""
    from flows.schedule import ScheduleError, check_cron, schedule
    from synthgen.model_check import check_job_models
    from synthgen.spec import SpecError, load_spec

    with failing_on(SpecError, ScheduleError):
        if cron is not None:
            check_cron(cron)
        job = load_spec(spec)
        check_job_models(job)  # from config files, before Prefect is asked anything
        paths = cli_paths()
        dep = schedule(job, str(paths.root), cron, pool, name, shard_pool=shards_on,
                       catalog_url=paths.catalog if paths.catalog_is_url else None)
    say(f"scheduled {name or job.name} (deployment {dep}) on pool {pool!r}" + (f", cron {cron!r}" if cron else ""))
    say(f"start a worker where it should run:  prefect worker start --pool {pool}")
    if shards_on:
        say(f"and one per GPU machine:  SYNTHGEN_GPUS=0 prefect worker start --pool {shards_on} --limit 1")


@app.command(rich_help_panel=SCHEDULE)
def schedules() -> None:
    """List scheduled jobs with their next run times."""
    from flows.schedule import ScheduleError, list_schedules

    with failing_on(ScheduleError):
        items = list_schedules()
    print_rows("synthgen schedules", ("name", "cron", "pool", "dataset", "next runs", "deployment"),
               [(s.name, s.cron, s.pool, s.dataset, s.next_runs, s.deployment_id) for s in items])


@app.command(rich_help_panel=SCHEDULE)
def unschedule(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Remove a scheduled job."""
    from flows.schedule import ScheduleError, unschedule as run_unschedule

    with failing_on(ScheduleError):
        run_unschedule(name)
    say(f"removed schedule {name}")
