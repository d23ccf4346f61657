"""This process's shards, two at a time: the next one samples while the one before finishes.

A shard takes the sampler's turn for its sampling only
(``flows.executors.sampler_turn``). The executor submits shard N+1 as soon
as shard N holds the turn, so N+1 is waiting at the sampler when N's last
batch is sampled, and N's tail (its last batches' stages, then the driver's
decision and Parquet write) runs beside N+1's sampling. At most two shards
are in flight: memory stays at two shards' rows.

``submit`` decides how a shard call runs: by default on this executor's
threads with its retry policy; the Prefect shell passes one that runs it as
a Prefect task (so each shard is a task run with Prefect's retries).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from flows.executors.base import OnBatch, Retry, with_retries
from flows.executors.sampler_turn import SamplerTurn
from flows.job.components import Setup
from flows.job.shard_step import ShardResult, ShardStep
from synthgen.plan import Shard

IN_FLIGHT = 2  # one sampling, one finishing


class ShardFuture(Protocol):
    """What ``submit`` returns: a concurrent.futures ``Future`` or a Prefect future."""

    def result(self) -> ShardResult: ...

    def add_done_callback(self, fn: Callable) -> None: ...


Submit = Callable[[Callable[[], ShardResult], Shard], ShardFuture]


@dataclass
class LocalExecutor:
    """Shards in this process, overlapped; ``on_batch(n)`` after each sampled batch (progress)."""

    retry: Retry = field(default_factory=Retry)
    submit: Submit | None = None
    on_batch: OnBatch | None = None

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]:
        parts = setup()
        sampler, stop = threading.Lock(), threading.Event()
        with ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="synthgen-shard") as pool:
            submit = self.submit or (lambda call, shard: pool.submit(with_retries, call, shard, self.retry))
            in_flight: list[ShardFuture] = []
            try:
                for shard in shards:
                    turn = SamplerTurn(sampler, stop)

                    def call(shard=shard, turn=turn) -> ShardResult:
                        return step(shard, parts, self.on_batch, turn)

                    future = submit(call, shard)
                    # A shard that ends, however it ends, no longer holds the sampler (nor keeps this loop waiting).
                    future.add_done_callback(lambda _, turn=turn: turn.give_back())
                    turn.started.wait()  # the next turn only once this shard holds its own: sampling in plan order
                    in_flight.append(future)
                    if len(in_flight) == IN_FLIGHT:
                        yield in_flight.pop(0).result()
                while in_flight:
                    yield in_flight.pop(0).result()
            except BaseException:
                # Ctrl-C, a shard that failed for good, or the driver stopped reading: the shards in flight
                # stop at their next batch instead of finishing work nobody waits for.
                stop.set()
                raise

