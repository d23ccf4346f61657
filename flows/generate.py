"""The generation flow: Prefect orchestrates, ``flows.steps`` does the work.

One flow run = one MLflow run = at most one new dataset version. Tasks work
at shard granularity (hundreds to thousands of images), never per image;
each shard task retries with backoff, and staged shards make a rerun after a
crash redo only the shards that were not finished.
"""

from __future__ import annotations

import json
import time

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from catalog import Catalog, RunRef
from catalog.card import write_card
from catalog.dedup_report import dedup_report
from catalog.version import open_version
from flows import progress
from flows.dead_runs import close_dead_runs, owner_tags
from flows.settings import configure, publish_url, retry_policy, shard_pool as default_shard_pool
from flows.steps import (
    CommitReport,
    ShardReport,
    dedup_and_commit,
    generate_shard,
    get_embedder,
    get_generator,
    summary_metrics,
    write_grid,
    write_real_pairs,
)
from flows.tracking import Tracker
from synthgen.failpoints import failpoint
from synthgen.model_check import check_job_models
from synthgen.plan import Shard, make_shards
from synthgen.spec import JobSpec, parse_spec


@task(name="load-models", cache_policy=NO_CACHE)
def load_models_task(spec: JobSpec) -> dict:
    gen, emb = get_generator(spec), get_embedder(spec)
    return {"generator": f"{gen.pipeline_class} on {gen.device}", "embedder": emb.name}


class ShardFailed(RuntimeError):
    """A shard kept failing after its retries; the message names it and the error."""


@task(
    name="generate-shard",
    task_run_name="generate {shard.name} [{shard.start}:{shard.stop})",
    retries=2,
    retry_delay_seconds=[2, 10],  # replaced per run from settings.retry_policy()
    cache_policy=NO_CACHE,
)
def generate_shard_task(spec: JobSpec, shard: Shard, data_dir: str, runs: RunRef) -> ShardReport:
    try:
        return generate_shard(spec, shard, configure(data_dir), runs, on_batch=progress.advance)
    except Exception as exc:
        # Name the shard: after the retries this is the message the user sees.
        raise ShardFailed(f"{shard.name} (plan [{shard.start}:{shard.stop})) failed: "
                          f"{type(exc).__name__}: {exc}") from exc


def shard_task_with_policy():
    """``generate_shard_task`` with the retries and backoff of ``settings.retry_policy()``."""
    retries, delays = retry_policy()
    return generate_shard_task.with_options(retries=retries, retry_delay_seconds=delays)


@task(name="publish", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def publish_task(data_dir: str, dataset: str, url: str) -> str:
    """Push the dataset's new versions (with their cards and indexes) to the shared catalog."""
    from catalog.publish import push

    r = push(Catalog(configure(data_dir).catalog), dataset, url)
    return f"{r.url}: {dataset}@{r.head}"


@task(name="dedup-and-commit", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def commit_task(spec: JobSpec, shards: list[Shard], data_dir: str, runs: RunRef) -> CommitReport:
    return dedup_and_commit(spec, shards, configure(data_dir), [runs])


def preflight(spec: JobSpec, catalog: Catalog) -> None:
    """Check catalog references before any model loads (a bad name costs nothing)."""
    from catalog import CatalogError

    if spec.dedup.real_dataset:
        info = catalog.info(spec.dedup.real_dataset)  # raises with the known names
        if info["origin"] != "real":
            raise CatalogError(f"dedup.real_dataset: {spec.dedup.real_dataset!r} is a {info['origin']} dataset")
        if catalog.head(spec.dedup.real_dataset) is None:
            raise CatalogError(f"dedup.real_dataset: {spec.dedup.real_dataset!r} has no versions yet")
    if catalog.exists(spec.output.dataset) and catalog.info(spec.output.dataset)["origin"] != "synthetic":
        raise CatalogError(f"output.dataset: {spec.output.dataset!r} is a real dataset")


def _close_dead_runs(tracker: Tracker, job: JobSpec, runs: RunRef, log) -> None:
    """Mark the runs of this spec whose process was killed; bookkeeping never fails the job."""
    try:
        for dead in close_dead_runs(tracker, job.digest(), runs.prefect_flow_run_id):
            log.info(f"marked the runs of a killed process failed: MLflow {dead.mlflow_run_id}, "
                     f"Prefect {dead.prefect_flow_run_id}")
    except Exception as exc:  # noqa: BLE001 - e.g. the Prefect API briefly unreachable
        log.warning(f"could not mark the runs of killed processes: {type(exc).__name__}: {exc}")


@flow(name="synthgen-generate", log_prints=True)
def generate_dataset(spec: dict, data_dir: str | None = None, shard_pool: str | None = None) -> dict:
    """Generate, deduplicate and commit one job's images as a new dataset version.

    ``shard_pool`` (default ``$SYNTHGEN_SHARD_POOL``): generate the shards as
    flow runs on that work pool's workers (``flows.distributed``) instead of
    in this process; the result is the same. It needs a long-lived Prefect
    server and a data folder every worker reaches at the same path.
    """
    t0 = time.perf_counter()
    job = parse_spec(spec)  # validated again: deployments pass raw dicts
    paths = configure(data_dir)
    catalog = Catalog(paths.catalog)
    preflight(job, catalog)
    check_job_models(job)  # config files only; deployments reach here without the CLI's checks
    shard_pool = shard_pool or default_shard_pool()
    if shard_pool:
        from flows.schedule import require_server

        require_server()  # workers cannot reach the temporary server of a plain run
    log = get_run_logger()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = RunRef(prefect_flow_run_id=str(flow_run.id), mlflow_run_id=None)
    runs.mlflow_run_id = tracker.start(job, tags={"prefect.flow_run_id": runs.prefect_flow_run_id, **owner_tags()})
    try:
        _close_dead_runs(tracker, job, runs, log)
        shards = make_shards(job.total_images, job.output.shard_size)
        log.info(f"{job.name}: {job.total_images} images in {len(shards)} shards -> {job.output.dataset}")
        # Distributed, the workers load the generator; the embedder (for the commit) loads while they work.
        models = None if shard_pool else load_models_task(job)
        startup_s = time.perf_counter() - t0
        # The same spec committed before (e.g. killed while logging): reuse it, generate nothing.
        todo = [] if catalog.find_job(job.output.dataset, job.digest()) else shards
        if not todo:
            log.info(f"{job.name}: this exact spec is already committed to {job.output.dataset}; reusing it")
        shard_runs: list[dict] = []
        if todo and shard_pool:
            from flows.distributed import run_on_workers  # imports this module

            reports, shard_runs = run_on_workers(job, todo, paths, runs, shard_pool)
        else:
            shard_task = shard_task_with_policy()
            reports = []
            with progress.display(sum(len(s) for s in todo), f"{job.name}", shards=len(todo)):
                for s in todo:
                    reports.append(shard_task(job, s, str(paths.root), runs))
                    progress.shard_done(reports[-1].rows if reports[-1].reused else 0)
        t_commit = time.perf_counter()
        commit = commit_task(job, shards, str(paths.root), runs)
        models = models or {"generator": f"{job.generator.model} on the workers of pool {shard_pool!r}",
                            "embedder": get_embedder(job).name}
        t_finish = time.perf_counter()
        grid = write_grid(catalog, commit.dataset, commit.version, commit.files)
        wall = time.perf_counter() - t0
        metrics = summary_metrics(commit, reports, wall)
        metrics["startup_s"] = startup_s
        metrics["commit_s"] = t_finish - t_commit
        tracker.log_metrics(metrics)
        tracker.log_artifact(grid)
        failpoint("finishing", "after the version commit, while logging to MLflow")
        tracker.log_artifact(commit.manifest_path)
        spec_file = catalog.version_dir(commit.dataset, commit.version) / "job.yaml"
        spec_file.write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
        tracker.log_artifact(spec_file)
        if shard_runs:  # which host and GPU made each shard
            where = catalog.version_dir(commit.dataset, commit.version) / "shard-runs.json"
            where.write_text(json.dumps(shard_runs, indent=1))
            tracker.log_artifact(where)
            tracker.set_tags({"synthgen.shard_pool": shard_pool})
        if job.dedup.real_dataset:
            pairs = write_real_pairs(catalog, commit.dataset, commit.version, commit.files, job.dedup.real_dataset)
            if pairs:
                tracker.log_artifact(pairs)
        card = write_card(catalog, f"{commit.dataset}@{commit.version}")
        tracker.log_artifact(card)
        tracker.log_artifacts(card.parent / "grids", "grids")  # the card's per-class images
        report = dedup_report(open_version(catalog, f"{commit.dataset}@{commit.version}"),
                              catalog.version_dir(commit.dataset, commit.version) / "dedup-histogram.png")
        tracker.log_artifact(report.histogram)
        tracker.log_metrics({f"rows_nn_synthetic_ge_{x:.2f}": n for x, n in report.would_drop.items()}
                            | {f"rows_nn_real_ge_{x:.2f}": n for x, n in report.would_block.items()})
        ref = f"{commit.dataset}@{commit.version}"
        tracker.log_dataset(ref, commit.manifest_sha256, commit.manifest_path, "output")
        if job.dedup.real_dataset:
            real = catalog.head(job.dedup.real_dataset)
            real_path = catalog.manifest_path(job.dedup.real_dataset, real)
            tracker.log_dataset(
                f"{job.dedup.real_dataset}@{real}", catalog.manifest_sha256(job.dedup.real_dataset, real),
                str(real_path), "reference",
            )
        tracker.set_tags({"synthgen.dataset": ref, "synthgen.reused_version": str(commit.reused)})
        published, url = None, publish_url()
        if url:  # last: the version's card, grids and indexes are written by now
            published = publish_task(str(paths.root), commit.dataset, url)
            tracker.set_tags({"synthgen.published": published})
        metrics["finish_s"] = time.perf_counter() - t_finish  # grid, card, report, MLflow logging
        metrics["wall_s"] = time.perf_counter() - t0
        tracker.log_metrics({"finish_s": metrics["finish_s"], "wall_s": metrics["wall_s"]})
        result = {
            "job": job.name,
            "dataset": commit.dataset,
            "version": commit.version,
            "reused": commit.reused,
            "counts": commit.counts,
            "metrics": metrics,
            "models": models,
            "files": commit.files,
            "manifest": commit.manifest_path,
            "grid": str(grid),
            "prefect_flow_run_id": runs.prefect_flow_run_id,
            "prefect_flow_run_name": flow_run.name,
            "mlflow_run_id": runs.mlflow_run_id,
            "mlflow_tracking_uri": tracker.tracking_uri,
            "data_dir": str(paths.root),
            "shard_runs": shard_runs,
            "published": published,
        }
        create_markdown_artifact(
            key="synthgen-summary",
            markdown=_markdown(result),
            description=f"{job.name} -> {ref}",
        )
        tracker.end("FINISHED")
        return result
    except BaseException:
        tracker.end("FAILED")
        raise


def _markdown(r: dict) -> str:
    m = r["metrics"]
    return (
        f"# {r['job']} -> {r['dataset']}@{r['version']}\n\n"
        f"| generated | kept | duplicates | real copies | images/s |\n|---|---|---|---|---|\n"
        f"| {m['generated']:.0f} | {m['kept']:.0f} | {m['dropped_duplicate']:.0f} | "
        f"{m['blocked_real_copy']:.0f} | {m['images_per_s']:.1f} |\n\n"
        f"MLflow run `{r['mlflow_run_id']}`; manifest `{r['manifest']}`\n"
    )
