"""``run_job``: a whole job's data path as a library call, with no Prefect, MLflow or CLI.

The stages, in order:

1. the spec (a path, a dict or a ``JobSpec``) is validated; a spec committed
   before is answered from the catalog, with nothing loaded;
2. the plan's first round is cut into shards; shards an earlier (killed)
   run decided are kept, shards a worker staged are read back;
3. the executor maps the shard step over the rest and hands results back
   in plan order, and the driver's ordered consumer decides each as it
   arrives (``keep: quality``: all of them at the end);
4. ``kept_per_condition``: once a round is decided, the next round asks the
   conditions still short for their shortfall (``synthgen.plan.next_round``,
   a pure function of the decisions) and goes through 2-3 again, until
   every condition has its kept count or hit its cap;
5. the version is published (rechecked against a head that moved) and the
   staging folder removed.

The Prefect flow (``flows.generate``) wraps this with tracking and reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from catalog import Catalog, RunRef
from flows.executors.base import Executor
from flows.executors.local import LocalExecutor
from flows.job.commit import CommitReport, commit_report, publish
from flows.job.components import ComponentLoader, Setup
from flows.job.decisions import OrderedDecisions
from flows.job.shard_step import ShardReport, ShardResult, ShardStep
from flows.job.staging import Staging
from flows.settings import Paths, resolve_data_dir
from synthgen.plan import Shard, next_round
from synthgen.spec import JobSpec, load_spec, parse_spec

SpecLike = JobSpec | dict | str | Path


@dataclass
class JobResult:
    """What ``run_job`` did: the committed version, and each shard's report in plan order."""

    job: JobSpec
    commit: CommitReport
    shards: list[ShardReport] = field(default_factory=list)
    embedding_model: str | None = None
    commit_s: float = 0.0  # deciding what was left, rechecking and publishing, after the last shard

    @property
    def dataset(self) -> str:
        return self.commit.dataset

    @property
    def version(self) -> int:
        return self.commit.version

    @property
    def reused(self) -> bool:
        return self.commit.reused

    @property
    def counts(self) -> dict[str, int]:
        return self.commit.counts

    @property
    def files(self) -> list[str]:
        return self.commit.files


def as_spec(spec: SpecLike) -> JobSpec:
    """A validated ``JobSpec`` from a spec, a dict, or a YAML file's path."""
    if isinstance(spec, JobSpec):
        return spec
    if isinstance(spec, dict):
        return parse_spec(spec)
    return load_spec(spec)


def data_paths(data_dir: str | Path | None) -> Paths:
    """The data folder's layout, with the folders a job writes created."""
    paths = Paths(resolve_data_dir(data_dir))
    for p in (paths.catalog, paths.staging):
        p.mkdir(parents=True, exist_ok=True)
    return paths


def run_job(spec: SpecLike, data_dir: str | Path | None = None, *, paths: Paths | None = None,
            executor: Executor | None = None, setup: Setup | None = None, runs: RunRef | None = None,
            catalog: Catalog | None = None, on_shard: Callable[[ShardReport], None] | None = None) -> JobResult:
    """Plan, generate, decide and commit one job; the committed version.

    ``data_dir`` (or ``paths``): the data folder (default ``$SYNTHGEN_DATA``, else ./synthgen-data).
    ``executor``: where shards run (default: this process, two shards overlapped).
    ``setup``: builds the components per worker (default: loaded from the spec).
    ``runs``: the orchestration and tracking runs the rows record (none outside Prefect/MLflow).
    ``catalog``: the catalog at ``paths.catalog`` to publish through (e.g. one with a timing hook).
    ``on_shard``: called with each shard's report in plan order, once it is decided.
    """
    job = as_spec(spec)
    paths = paths or data_paths(data_dir)
    catalog = catalog or Catalog(paths.catalog, cache=paths.cache)
    staging = Staging.of(paths, job, catalog.storage if catalog.url else None)
    done = catalog.find_job(job.output.dataset, job.digest())
    if done is not None:  # this exact spec is committed: nothing to load or generate
        staging.remove()
        return JobResult(job, commit_report(catalog, done, reused=True))
    runs = runs or RunRef()
    setup = setup or ComponentLoader(job, str(paths.catalog), str(paths.cache))
    executor = executor or LocalExecutor()
    decisions = OrderedDecisions(job, catalog, staging, setup.embedder())
    step, shards, reports = ShardStep(job, runs), list(decisions.shards), []
    try:
        while shards:  # one pass per round of the plan (one round unless kept_per_condition extends it)
            work = todo(decisions, shards)
            results = executor.map(step, work, setup)
            try:
                for report in decide_in_order(decisions, shards, {s.index for s in work}, results):
                    reports.append(report)
                    if on_shard:
                        on_shard(report)
            finally:
                results.close()  # a failed decision stops the shards still in flight
            shards = extend(decisions)
    finally:
        if callable(getattr(executor, "close", None)):
            executor.close()  # workers kept between rounds
    t_commit = time.perf_counter()
    if job.dedup.keep != "first":
        decisions.decide_whole_job()
    commit = publish(decisions, [runs])
    staging.remove()
    return JobResult(job, commit, reports, decisions.embedder.name, time.perf_counter() - t_commit)


def extend(decisions: OrderedDecisions) -> list[Shard]:
    """The plan's next round as shards, once every shard before it is decided; none when the plan is complete.

    Only ``kept_per_condition`` jobs extend: the round depends on the kept
    counts of the decided shards alone, so every run of the job (a rerun, a
    resume, any executor) extends it the same way.
    """
    if decisions.spec.kept_per_condition is None:
        return []
    rnd = next_round(decisions.spec, decisions.rounds[-1], *decisions.tally())
    return decisions.add_round(rnd) if rnd is not None else []


def todo(decisions: OrderedDecisions, shards: list[Shard]) -> list[Shard]:
    """The shards no earlier run decided or staged: the executor's work."""
    return [s for s in shards if decisions.decided(s) is None and decisions.staging.staged_rows(s) is None]


def decide_in_order(decisions: OrderedDecisions, shards: list[Shard], work: set[int],
                    results: Iterator[ShardResult]) -> Iterator[ShardReport]:
    """Consume every shard in plan order: the executor's next result for the shards in ``work``,
    else what an earlier run left: a decision (kept) or a staged shard (read back and decided)."""
    for shard in shards:
        if shard.index in work:
            result = next(results)
            decisions.consume(shard, result.samples)
            yield result.report
            continue
        earlier = decisions.decided(shard)
        if earlier is not None:
            yield ShardReport(shard.index, sum(earlier.counts.values()), reused=True)
            continue
        rows = decisions.staging.staged_rows(shard)
        decisions.consume(shard, None)
        yield ShardReport(shard.index, rows or 0, reused=True)
