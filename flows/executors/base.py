"""The executor interface, and the retry policy every executor applies to a failing shard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

from flows.job.components import Setup
from flows.job.shard_step import ShardResult, ShardStep
from synthgen.plan import Shard

OnBatch = Callable[[int], None]


class ShardFailed(RuntimeError):
    """A shard kept failing after its retries; the message names it and the error."""


class Executor(Protocol):
    """Maps a shard step over shards.

    ``setup`` builds the components once per worker (``flows.job.components``);
    results come back in plan order, one per shard given, as each is ready
    (memory stays bounded: an executor runs only a few shards ahead of the one
    the driver waits for). A shard that fails for good raises ``ShardFailed``
    (or the interrupt that stopped it) from the iterator.

    A job whose plan comes in rounds (``kept_per_condition``) calls ``map``
    once per round with the same step and setup; an executor may keep its
    workers between such calls, and then has a ``close()`` that ``run_job``
    calls when the job's shards are done.
    """

    def map(self, step: ShardStep, shards: list[Shard], setup: Setup) -> Iterator[ShardResult]: ...


@dataclass(frozen=True)
class Retry:
    """How often a failed shard is tried again, and after which delays (the last delay repeats)."""

    retries: int = 2
    delays: tuple[float, ...] = (2.0, 10.0)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return self.delays[min(attempt, len(self.delays)) - 1] if self.delays else 0.0


def failed(shard: Shard, exc: BaseException | str) -> ShardFailed:
    """The error that names a shard which failed for good."""
    what = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return ShardFailed(f"{shard.name} (plan [{shard.start}:{shard.stop})) failed: {what}")


def with_retries(call: Callable[[], ShardResult], shard: Shard, retry: Retry,
                 sleep: Callable[[float], None] = time.sleep) -> ShardResult:
    """Run ``call`` with ``retry``'s policy; the last failure raises ``ShardFailed`` naming the shard."""
    for attempt in range(retry.retries + 1):
        try:
            return call()
        except Exception as exc:
            if attempt == retry.retries:
                raise failed(shard, exc) from exc
            sleep(retry.delay(attempt + 1))
    raise AssertionError("unreachable")
