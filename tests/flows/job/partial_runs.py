"""What a run killed part-way leaves behind, made with the real shard step and decisions (for resume tests)."""

from __future__ import annotations

from catalog import Catalog, RunRef
from catalog.schema import samples_to_table
from flows.executors.local import LocalExecutor
from flows.job.components import ComponentLoader, Given, Setup, with_generator
from flows.job.decisions import OrderedDecisions
from flows.job.shard_step import ShardStep
from flows.job.staging import Staging
from flows.settings import Paths
from synthgen.plan import Shard, make_shards
from synthgen.spec import JobSpec


def injected(spec: JobSpec, paths: Paths, generator) -> Setup:
    """The spec's components with ``generator`` in place of its own (a test's wrapper around the real one)."""
    parts = ComponentLoader(spec, str(paths.catalog))()
    return Given(with_generator(parts, generator))


def decide_shards(spec: JobSpec, paths: Paths, runs: RunRef, shards: list[Shard] | None = None,
                  setup: Setup | None = None) -> OrderedDecisions:
    """Generate and decide ``shards`` (default: all) in plan order, and stop before the commit:
    what an in-process run killed then leaves in the staging folder."""
    setup = setup or ComponentLoader(spec, str(paths.catalog))
    shards = make_shards(spec.total_images, spec.output.shard_size) if shards is None else shards
    decisions = OrderedDecisions(spec, Catalog(paths.catalog), Staging.of(paths, spec), setup.embedder())
    for shard, result in zip(shards, LocalExecutor().map(ShardStep(spec, runs), shards, setup)):
        decisions.consume(shard, result.samples)
    return decisions


def stage_shards(spec: JobSpec, paths: Paths, runs: RunRef, shards: list[Shard], setup: Setup | None = None) -> None:
    """Generate ``shards`` and stage them undecided, in the order given: what work-pool workers leave."""
    setup = setup or ComponentLoader(spec, str(paths.catalog))
    parts, step, staging = setup(), ShardStep(spec, runs), Staging.of(paths, spec)
    for shard in shards:
        staging.stage(shard, samples_to_table(step(shard, parts).samples))
