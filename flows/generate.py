"""The generation flow: Prefect orchestrates, the stages do the work.

One flow run = one MLflow run = at most one new dataset version. Tasks work
at shard granularity (hundreds to thousands of images), never per image;
each shard task retries with backoff, and staged shards make a rerun after a
crash redo only the shards that were not finished. The flow reads as its
stages: load the models, generate the shards (here or on a work pool),
decide and commit, write and log the reports, publish.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from catalog import Catalog, RunRef
from flows import progress
from flows.commit import CommitReport
from flows.dead_runs import close_dead_runs, owner_tags
from flows.distributed import run_on_workers
from flows.local_devices import job_devices, run_on_devices
from flows.models import get_embedder
from flows.overlap import run_overlapped
from flows.preflight import preflight
from flows.reports import Finished, summary_metrics, write_reports
from flows.schedule import require_server
from flows.settings import Paths, Settings, configure
from flows.shard import ShardReport
from flows.tasks import ShardFailed, commit_task, load_models_task, publish_task, shard_task_with_policy
from flows.tracking import Tracker
from synthgen.failpoints import failpoint
from synthgen.plan import Shard, make_shards
from synthgen.spec import JobSpec, parse_spec

__all__ = ["ShardFailed", "generate_dataset", "preflight"]


def _close_dead_runs(tracker: Tracker, job: JobSpec, runs: RunRef) -> None:
    """Mark the runs of this spec whose process was killed; bookkeeping never fails the job."""
    log = get_run_logger()
    try:
        for dead in close_dead_runs(tracker, job.digest(), runs.prefect_flow_run_id):
            log.info(f"marked the runs of a killed process failed: MLflow {dead.mlflow_run_id}, "
                     f"Prefect {dead.prefect_flow_run_id}")
    except Exception as exc:  # noqa: BLE001 - e.g. the Prefect API briefly unreachable
        log.warning(f"could not mark the runs of killed processes: {type(exc).__name__}: {exc}")


@flow(name="synthgen-generate", log_prints=True)
def generate_dataset(spec: dict, data_dir: str | None = None, shard_pool: str | None = None,
                     settings: Settings | None = None) -> dict:
    """Generate, deduplicate and commit one job's images as a new dataset version.

    ``shard_pool`` (default ``settings.shard_pool``): generate the shards as flow runs on that work pool's
    workers (``flows.distributed``) instead of in this process; the result is the same. It needs a
    long-lived Prefect server and a data folder every worker reaches. ``settings``: read here when not given.
    """
    t0 = time.perf_counter()
    job = parse_spec(spec)  # validated again: deployments pass raw dicts
    settings = settings or Settings()  # the edge: nothing below reads the environment
    paths = configure(data_dir, settings)
    catalog = Catalog(paths.catalog)
    shard_pool = shard_pool or settings.shard_pool
    preflight(job, catalog, shard_pool)
    if shard_pool:
        require_server()  # workers cannot reach the temporary server of a plain run
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = RunRef(prefect_flow_run_id=str(flow_run.id), mlflow_run_id=None)
    wm = job.output.watermark
    runs.mlflow_run_id = tracker.start(job, tags={"prefect.flow_run_id": runs.prefect_flow_run_id, **owner_tags(),
                                                  "synthgen.watermark": f"{wm.method}:{wm.strength}" if wm.enabled else "off"})
    try:
        _close_dead_runs(tracker, job, runs)
        shards = make_shards(job.total_images, job.output.shard_size)
        # Distributed, the workers load the generator; the embedder (for the commit) loads while they work.
        models, startup_s = (None if shard_pool else load_models_task(job)), time.perf_counter() - t0
        reports, shard_runs = generate_shards(job, shards, catalog, paths, runs, shard_pool, settings)
        t_commit = time.perf_counter()
        commit = commit_task(job, shards, paths, runs)
        t_finish = time.perf_counter()
        metrics = summary_metrics(commit, reports, t_finish - t0)
        metrics |= {"startup_s": startup_s, "commit_s": t_finish - t_commit}
        failpoint("finishing", "after the version commit, while logging to MLflow")
        done = Finished(catalog, job, commit, metrics, shard_runs, shard_pool)
        for logged in write_reports(done):  # grid, card, real pairs, histogram, metrics, ...: written, then logged
            logged.log_to(tracker)
        published = None
        if settings.publish_url:  # last: the version's card, grids and indexes are written by now
            published = publish_task(paths, commit.dataset, settings.publish_url)
            tracker.set_tags({"synthgen.published": published})
        metrics |= {"finish_s": time.perf_counter() - t_finish, "wall_s": time.perf_counter() - t0}  # reports, logging
        tracker.log_metrics({k: metrics[k] for k in ("finish_s", "wall_s")})
        result = _result(done, models, runs, tracker, paths, published)
        create_markdown_artifact(key="synthgen-summary", markdown=_markdown(result), description=f"{job.name} -> {done.ref}")
        tracker.end("FINISHED")
        return result
    except BaseException:
        tracker.end("FAILED")
        raise


def generate_shards(job: JobSpec, shards: list[Shard], catalog: Catalog, paths: Paths, runs: RunRef,
                    shard_pool: str | None, settings: Settings) -> tuple[list[ShardReport], list[dict]]:
    """Stage the shards not yet committed: in this process, or as flow runs on ``shard_pool``."""
    log = get_run_logger()
    log.info(f"{job.name}: {job.total_images} images in {len(shards)} shards -> {job.output.dataset}")
    # The same spec committed before (e.g. killed while logging): reuse it, generate nothing.
    todo = [] if catalog.find_job(job.output.dataset, job.digest()) else shards
    if not todo:
        log.info(f"{job.name}: this exact spec is already committed to {job.output.dataset}; reusing it")
        return [], []
    if shard_pool:
        return run_on_workers(job, todo, paths, runs, shard_pool, settings)
    devices = job_devices(job)
    if len(devices) > 1:  # several GPUs here: one worker process per device, no server
        log.info(f"{job.name}: {len(todo)} shards on {len(devices)} device workers: {', '.join(devices)}")
        return run_on_devices(job, todo, paths, runs, devices, settings), []
    with progress.display(sum(len(s) for s in todo), f"{job.name}", shards=len(todo)):
        reports = run_overlapped(shard_task_with_policy(settings), job, todo, paths, runs,
                                 on_done=lambda r: progress.shard_done(r.rows if r.reused else 0))
    return reports, []


def _result(done: Finished, models: dict | None, runs: RunRef, tracker: Tracker, paths: Paths,
            published: str | None) -> dict:
    """The flow's return value (what the CLI prints and ``--json`` writes)."""
    c: CommitReport = done.commit
    # Distributed, the workers loaded the generator; the commit loaded the embedder here.
    models = models or {"generator": f"{done.job.generator.model} on the workers of pool {done.shard_pool!r}",
                        "embedder": get_embedder(done.job).name}
    return {
        "job": done.job.name,
        "dataset": c.dataset,
        "version": c.version,
        "reused": c.reused,
        "counts": c.counts,
        "metrics": done.metrics,
        "models": models,
        "files": c.files,
        "excluded_files": c.excluded_files,
        "manifest": c.manifest_path,
        "grid": str(done.folder / "grid.png"),
        "prefect_flow_run_id": runs.prefect_flow_run_id,
        "prefect_flow_run_name": flow_run.name,
        "mlflow_run_id": runs.mlflow_run_id,
        "mlflow_tracking_uri": tracker.tracking_uri,
        "data_dir": str(paths.root),
        "shard_runs": done.shard_runs,
        "published": published,
    }


def _markdown(r: dict) -> str:
    m = r["metrics"]
    return (
        f"# {r['job']} -> {r['dataset']}@{r['version']}\n\n"
        f"| generated | kept | duplicates | real copies | images/s |\n|---|---|---|---|---|\n"
        f"| {m['generated']:.0f} | {m['kept']:.0f} | {m['dropped_duplicate']:.0f} | "
        f"{m['blocked_real_copy']:.0f} | {m['images_per_s']:.1f} |\n\n"
        f"MLflow run `{r['mlflow_run_id']}`; manifest `{r['manifest']}`\n"
    )
