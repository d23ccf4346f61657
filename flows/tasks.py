"""The generation flow's Prefect tasks: each turns its inputs into objects and calls one step.

Shared by the in-process flow (``flows.generate``) and the shard flows that
run on a work pool's workers (``flows.distributed``), so a shard is the
same task, with the same retries, wherever it runs.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from catalog import Catalog, RunRef
from flows import progress
from flows.commit import CommitReport, dedup_and_commit
from flows.models import get_embedder, get_generator
from flows.settings import Paths, Settings
from flows.shard import ShardReport, generate_shard
from synthgen.plan import Shard
from synthgen.spec import JobSpec
from synthgen.turns import SamplerTurn


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
    retry_delay_seconds=[2, 10],  # replaced per run from Settings (shard_task_with_policy)
    cache_policy=NO_CACHE,
)
def generate_shard_task(spec: JobSpec, shard: Shard, paths: Paths, runs: RunRef,
                        turn: SamplerTurn | None = None) -> ShardReport:
    """One shard, named in the error if it fails; ``turn``: its sampler turn when shards overlap."""
    try:
        return generate_shard(spec, shard, paths, runs, on_batch=progress.advance, turn=turn)
    except Exception as exc:
        # Name the shard: after the retries this is the message the user sees.
        raise ShardFailed(f"{shard.name} (plan [{shard.start}:{shard.stop})) failed: "
                          f"{type(exc).__name__}: {exc}") from exc



def shard_task_with_policy(settings: Settings):
    """``generate_shard_task`` with the retries and backoff of ``settings``."""
    return generate_shard_task.with_options(retries=settings.shard_retries, retry_delay_seconds=settings.retry_delays)


@task(name="publish", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def publish_task(paths: Paths, dataset: str, url: str) -> str:
    """Push the dataset's new versions (with their cards and indexes) to the shared catalog."""
    from catalog.publish import push

    r = push(Catalog(paths.catalog), dataset, url)
    return f"{r.url}: {dataset}@{r.head}"


@task(name="dedup-and-commit", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE)
def commit_task(spec: JobSpec, shards: list[Shard], paths: Paths, runs: RunRef) -> CommitReport:
    return dedup_and_commit(spec, shards, paths, [runs])
