"""The generation flow's Prefect tasks: each runs one step of the data path as a task run.

The shard task wraps a shard call from the in-process executor
(``flows.executors.local``: its ``submit`` hook), so every shard is a task
run with Prefect's retries; ``publish`` pushes to a shared catalog.
"""

from __future__ import annotations

from typing import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from catalog import Catalog
from catalog.publish import push
from flows.executors.base import failed
from flows.executors.local import ShardFuture, Submit
from flows.job.shard_step import ShardResult
from flows.settings import Paths, Settings
from synthgen.plan import Shard


@task(
    name="generate-shard",
    task_run_name="generate {shard.name} [{shard.start}:{shard.stop})",
    retries=2,
    retry_delay_seconds=[2, 10],  # replaced per run from Settings (prefect_submit)
    cache_policy=NO_CACHE,
)
def generate_shard_task(call: Callable[[], ShardResult], shard: Shard) -> ShardResult:
    """One shard, named in the error if it fails (after the retries, the message the user sees)."""
    try:
        return call()
    except Exception as exc:
        raise failed(shard, exc) from exc


def prefect_submit(settings: Settings) -> Submit:
    """A ``submit`` for ``LocalExecutor`` that runs each shard as a task run with ``settings``' retries."""
    task_ = generate_shard_task.with_options(retries=settings.shard_retries, retry_delay_seconds=settings.retry_delays)

    def submit(call: Callable[[], ShardResult], shard: Shard) -> ShardFuture:
        return task_.submit(call, shard)

    return submit


@task(name="publish", retries=2, retry_delay_seconds=[5, 30], cache_policy=NO_CACHE)
def publish_task(paths: Paths, dataset: str, url: str) -> str:
    """Push the dataset's new versions (with their cards and indexes) to the shared catalog."""
    r = push(Catalog(paths.catalog), dataset, url)
    return f"{r.url}: {dataset}@{r.head}"
