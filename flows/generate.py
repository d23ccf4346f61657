"""The generation flow: Prefect orchestrates, the stages do the work.

One flow run = one MLflow run = at most one new dataset version. The data
path is ``flows.job.run_job``; this shell adds the settings, the tracker,
the choice of executor, the reports and the publish. Shards are task runs
(hundreds to thousands of images each, never one per image) that retry with
backoff; decided shards make a rerun after a crash redo only the shards that
were not finished. The flow reads as its stages: settings, tracker,
``run_job``, reports, publish.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from catalog import Catalog, RunRef
from catalog.per_condition import ConditionCounts, condition_counts
from catalog.storage import Storage
from catalog.version import open_version
from flows.dead_runs import close_dead_runs, owner_tags
from flows.executors.base import Executor, Retry, ShardFailed
from flows.executors.devices import DevicesExecutor, job_devices
from flows.executors.local import LocalExecutor
from flows.executors.prefect_pool import PrefectPoolExecutor
from flows.executors.ray_cluster import RayExecutor
from flows.job.components import ComponentLoader, Setup
from flows.job.run import JobResult, run_job
from flows.job.preflight import preflight
from flows.outputs.reports import Finished, summary_metrics, write_reports
from flows.schedule import require_server
from flows.settings import Paths, Settings, configure
from flows.tasks import prefect_submit, publish_task
from flows.tracking import Tracker
from synthgen.failpoints import failpoint
from synthgen.spec import JobSpec, parse_spec

__all__ = ["ShardFailed", "generate_dataset", "preflight"]


class Progress(Protocol):
    """What the flow reports progress to (the CLI passes a terminal bar: ``flows.cli.progress``)."""

    def display(self, total: int, description: str, shards: int = 0) -> AbstractContextManager: ...

    def advance(self, n: int) -> None: ...

    def shard_done(self, images: int = 0) -> None: ...


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
                     settings: Settings | None = None, components: Any = None, progress: Any = None) -> dict:
    """Generate, deduplicate and commit one job's images as a new dataset version.

    ``shard_pool`` (default ``settings.shard_pool``): generate the shards as flow runs on that work pool's
    workers (``flows.executors.prefect_pool``) instead of in this process; the result is the same. It needs a
    long-lived Prefect server and a data folder every worker reaches. ``settings``: read here when not given.
    ``components``: a ``flows.job.components.Setup`` (e.g. the CLI's, prefetching while the server starts).
    ``progress``: a ``Progress`` to show images and shards done on (the CLI's terminal bar).
    Both are typed ``Any`` because Prefect validates parameters by their annotations.
    """
    t0 = time.perf_counter()
    job = parse_spec(spec)  # validated again: deployments pass raw dicts
    settings = settings or Settings()  # the edge: nothing below reads the environment
    paths = configure(data_dir, settings)
    catalog = Catalog(paths.catalog, cache=paths.cache)
    shard_pool = shard_pool or settings.shard_pool
    preflight(job, catalog, shard_pool, settings.ray_address)  # both set: refused here, before anything starts
    if shard_pool:
        require_server()  # workers cannot reach the temporary server of a plain run
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = RunRef(prefect_flow_run_id=str(flow_run.id), mlflow_run_id=None)
    wm = job.output.watermark
    runs.mlflow_run_id = tracker.start(job, tags={"prefect.flow_run_id": runs.prefect_flow_run_id, **owner_tags(),
                                                  "synthgen.watermark": f"{wm.method}:{wm.strength}" if wm.enabled else "off"})
    try:
        _close_dead_runs(tracker, job, runs)
        setup = components or ComponentLoader(job, str(paths.catalog), str(paths.cache))
        executor = choose_executor(job, paths, settings, shard_pool, progress.advance if progress else None,
                                   store=catalog.storage if catalog.url else None)
        get_run_logger().info(f"{job.name}: {job.size_text} -> {job.output.dataset} ({describe(executor)})")
        if isinstance(executor, LocalExecutor) and not catalog.find_job(job.output.dataset, job.digest()):
            setup()  # the models, before the first shard (a committed spec loads nothing)
        startup_s = time.perf_counter() - t0
        sampled_here = isinstance(executor, LocalExecutor)  # batches counted as they sample; else per shard

        def shard_done(r) -> None:
            if progress:
                progress.shard_done(r.rows if r.reused or not sampled_here else 0)

        shards = -(-job.total_images // job.output.shard_size)
        with progress.display(job.total_images, job.name, shards) if progress else nullcontext():
            result = run_job(job, paths=paths, executor=executor, setup=setup, runs=runs, catalog=catalog,
                             on_shard=shard_done)
        t_finish = time.perf_counter()
        metrics = summary_metrics(result.commit, result.shards, t_finish - t0)
        metrics |= {"startup_s": startup_s, "commit_s": result.commit_s}
        failpoint("finishing", "after the version commit, while logging to MLflow")
        records = executor.records if isinstance(executor, PrefectPoolExecutor) else []
        per_condition = condition_counts(open_version(catalog, f"{result.dataset}@{result.version}"))
        done = Finished(catalog, job, result.commit, metrics, records, shard_pool, per_condition)
        for logged in write_reports(done):  # grid, card, real pairs, histogram, metrics, ...: written, then logged
            logged.log_to(tracker)
        if catalog.objects is not None:  # at a URL the reports read the new shards through the cache: not kept here
            catalog.objects.evict(catalog.manifest(result.dataset, result.version).added_shards)
        published = None
        if settings.publish_url:  # last: the version's card, grids and indexes are written by now
            published = publish_task(paths, result.dataset, settings.publish_url)
            tracker.set_tags({"synthgen.published": published})
        metrics |= {"finish_s": time.perf_counter() - t_finish, "wall_s": time.perf_counter() - t0}  # reports, logging
        tracker.log_metrics({k: metrics[k] for k in ("finish_s", "wall_s")})
        out = _result(done, result, models_used(result, setup, executor), runs, tracker, paths, published)
        create_markdown_artifact(key="synthgen-summary", markdown=_markdown(out), description=f"{job.name} -> {done.ref}")
        tracker.end("FINISHED")
        return out
    except BaseException:
        tracker.end("FAILED")
        raise


def choose_executor(job: JobSpec, paths: Paths, settings: Settings, shard_pool: str | None,
                    on_batch=None, store: Storage | None = None) -> Executor:
    """Where the shards run: a work pool's workers, a Ray cluster's actors, one process per device here, or this
    process (a pool and a Ray cluster both named is refused by ``preflight``).

    ``store``: the catalog's storage when it is at a URL (pool workers then stage their shards on it).
    """
    retry = Retry(settings.shard_retries, tuple(settings.retry_delays))
    if shard_pool:
        return PrefectPoolExecutor(shard_pool, str(paths.root), settings, store=store)
    if settings.ray_address:  # actors kept across a job's rounds; run_job closes them
        return RayExecutor(settings.ray_address, retry, settings.ray_workers, keep_workers=True)
    devices = job_devices(job)
    if len(devices) > 1:  # several GPUs here: one worker process per device, no server
        return DevicesExecutor(devices, retry, keep_workers=True)  # across a job's rounds; run_job closes it
    return LocalExecutor(retry, submit=prefect_submit(settings), on_batch=on_batch)


def describe(executor: Executor) -> str:
    """Where the shards run, for the log."""
    if isinstance(executor, PrefectPoolExecutor):
        return f"shards on the workers of pool {executor.pool!r}"
    if isinstance(executor, RayExecutor):
        return f"shards on the actors of the Ray cluster at {executor.address}"
    if isinstance(executor, DevicesExecutor):
        return f"shards on {len(executor.devices)} device workers: {', '.join(executor.devices)}"
    return "shards in this process"


def models_used(result: JobResult, setup: Setup, executor: Executor) -> dict:
    """Which generator and embedder made the rows, for the summary."""
    emb = result.embedding_model or setup.embedder().name
    if isinstance(executor, LocalExecutor) and not result.reused:
        gen = setup().generator  # loaded by the run already
        return {"generator": f"{gen.pipeline_class} on {gen.device}", "embedder": emb}
    return {"generator": f"{result.job.generator.model} ({describe(executor)})", "embedder": emb}


def _result(done: Finished, result: JobResult, models: dict, runs: RunRef, tracker: Tracker, paths: Paths,
            published: str | None) -> dict:
    """The flow's return value (what the CLI prints and ``--json`` writes)."""
    c = result.commit
    return {
        "job": done.job.name,
        "dataset": c.dataset,
        "version": c.version,
        "reused": c.reused,
        "counts": c.counts,
        "per_condition": per_condition_summary(done.per_condition),
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


def per_condition_summary(counts: ConditionCounts | None) -> dict | None:
    """What a ``kept_per_condition`` job did per condition, for the summary (None for a fixed-count job)."""
    if counts is None or counts.target is None:
        return None
    return {"kept_per_condition": counts.target, "max_per_condition": counts.cap, "capped": counts.capped,
            "missed": counts.missed, "conditions": {r.condition: {"generated": r.generated, "kept": r.kept}
                                                  for r in counts.rows}}


def _markdown(r: dict) -> str:
    m = r["metrics"]
    return (
        f"# {r['job']} -> {r['dataset']}@{r['version']}\n\n"
        f"| generated | kept | duplicates | real copies | images/s |\n|---|---|---|---|---|\n"
        f"| {m['generated']:.0f} | {m['kept']:.0f} | {m['dropped_duplicate']:.0f} | "
        f"{m['blocked_real_copy']:.0f} | {m['images_per_s']:.1f} |\n\n"
        f"MLflow run `{r['mlflow_run_id']}`; manifest `{r['manifest']}`\n"
    )
