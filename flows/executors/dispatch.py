"""The driver's side of executors that hand shards to worker processes: what to hand out next, retries,
and the results back in plan order.

``devices`` (a process per device, one shard at a time) and ``ray_cluster``
(an actor per worker, two at a time) share it; each says how a shard reaches
a worker and how to wait for one to end. The driver hands out shards only up to ``AHEAD`` per worker beyond the
one it waits for, so it holds a bounded number of shards' rows however far
ahead the workers get.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterator

from flows.executors.base import Retry, failed
from flows.job.shard_step import ShardResult
from synthgen.plan import Shard

AHEAD = 2  # shards run per worker beyond the one the driver waits for: bounds the driver's memory


class Dispatch:
    """One map call's shards: those still to hand out (retried ones first), failures counted, results by shard."""

    def __init__(self, shards: list[Shard], workers: int, retry: Retry):
        self.shards, self.workers, self.retry = shards, workers, retry
        self.todo: deque[Shard] = deque(shards)
        self.attempts: dict[int, int] = {}
        self.results: dict[int, ShardResult] = {}
        self.delivered = 0

    def in_plan_order(self, turn: Callable[[int], None]) -> Iterator[ShardResult]:
        """Each shard's result in plan order; ``turn(limit)`` hands out shards up to plan index ``limit`` and
        waits a while for one to end, until the shard the driver waits for has its result."""
        last = len(self.shards) - 1
        for pos, shard in enumerate(self.shards):
            while shard.index not in self.results:
                turn(self.shards[min(last, pos + AHEAD * self.workers)].index)
            self.delivered += 1  # before the yield: the consumer may close the iterator right after the last one
            yield self.results.pop(shard.index)

    @property
    def all_delivered(self) -> bool:
        """Every shard's result went to the consumer."""
        return self.delivered == len(self.shards)

    def next(self, limit: int) -> Shard | None:
        """The next shard to hand out, if it is not past plan index ``limit``."""
        return self.todo.popleft() if self.todo and self.todo[0].index <= limit else None

    def tries(self, shard: Shard) -> int:
        """How often ``shard`` failed so far (its next run is retry number that many)."""
        return self.attempts.get(shard.index, 0)

    def done(self, shard: Shard, result: ShardResult) -> None:
        """Keep ``shard``'s result until the driver reaches it in plan order."""
        self.results[shard.index] = result

    def failed(self, shard: Shard, error: str) -> None:
        """Count a failure: ``ShardFailed`` naming the shard when its retries are spent, else it runs again next."""
        self.attempts[shard.index] = self.tries(shard) + 1
        if self.attempts[shard.index] > self.retry.retries:
            raise failed(shard, error)
        self.todo.appendleft(shard)  # before later shards: the driver waits for it in plan order
