"""This process's shards, two at a time: the next one samples while the one before finishes.

A shard task takes the sampler's turn for its sampling only
(``synthgen.turns``). The flow submits shard N+1 as soon as shard N holds
the turn, so N+1 is waiting at the sampler when N's last batch is sampled,
and N's tail (its last batches' stages, its decision, its Parquet) runs
beside N+1's sampling. At most two shards are in flight: memory stays at
two shards' rows. Retries, failures and their messages are the shard
task's, as when shards ran one by one.
"""

from __future__ import annotations

import threading
from typing import Callable

from catalog import RunRef
from flows.settings import Paths
from flows.shard import ShardReport
from synthgen.plan import Shard
from synthgen.spec import JobSpec
from synthgen.turns import SamplerTurn

IN_FLIGHT = 2  # one sampling, one finishing


def run_overlapped(shard_task, job: JobSpec, todo: list[Shard], paths: Paths, runs: RunRef,
                   on_done: Callable[[ShardReport], None] = lambda r: None) -> list[ShardReport]:
    """Run ``shard_task`` (a Prefect task) over ``todo`` in plan order, overlapping each tail with the next shard.

    Reports come back in plan order; the first shard that fails for good
    raises here (after its retries), as a sequential loop would (a retry keeps the sampler).
    """
    sampler, stop = threading.Lock(), threading.Event()
    in_flight, reports = [], []
    try:
        for shard in todo:
            turn = SamplerTurn(sampler, stop)
            future = shard_task.submit(job, shard, paths, runs, turn)
            # A task that ends, however it ends, no longer holds the sampler (nor keeps this loop waiting).
            future.add_done_callback(lambda _, turn=turn: turn.give_back())
            turn.started.wait()  # the next turn only once this shard holds its own: sampling stays in plan order
            in_flight.append(future)
            if len(in_flight) == IN_FLIGHT:
                reports.append(in_flight.pop(0).result())
                on_done(reports[-1])
        for future in in_flight:
            reports.append(future.result())
            on_done(reports[-1])
    except BaseException:
        # Ctrl-C (or a shard that failed for good): the shards in flight run in the task runner's
        # threads, which the interrupt does not reach; they stop at their next batch instead of
        # finishing work nobody waits for (and the process exits within a batch, not a shard).
        stop.set()
        raise
    return reports
