"""The in-process executor: results in plan order, one sampler at a time in plan order, failures named,
retries that keep the sampler. The step here records what it does; the real step is tested through run_job."""

from __future__ import annotations

import threading
import time

import pytest

from flows.executors.base import Retry, ShardFailed
from flows.executors.local import LocalExecutor
from flows.job.shard_step import ShardReport, ShardResult
from synthgen.plan import make_shards


class Recording:
    """A shard step that samples (holding the sampler) and then finishes; ``fail``: shard -> failures left."""

    def __init__(self, fail: dict[int, int] | None = None, while_sampling: bool = True):
        self.events: list[tuple[str, int]] = []
        self.fail, self.while_sampling = dict(fail or {}), while_sampling
        self.lock = threading.Lock()
        self.sampling = 0
        self.overlaps = 0

    def note(self, what: str, shard: int) -> None:
        with self.lock:
            self.events.append((what, shard))

    def __call__(self, shard, parts, on_batch=None, slot=None) -> ShardResult:
        slot.take()
        with self.lock:
            self.sampling += 1
            self.overlaps += self.sampling > 1
        self.note("sample", shard.index)
        try:
            if self.fail.get(shard.index, 0) > 0:
                self.fail[shard.index] -= 1
                raise RuntimeError(f"shard {shard.index} broke")
            time.sleep(0.05)
        finally:
            with self.lock:
                self.sampling -= 1
        slot.give_back()
        self.note("done", shard.index)
        return ShardResult(ShardReport(shard.index, len(shard), reused=False))


def setup(device=None, share=1):
    return None  # the recording step needs no components


setup.embedder = lambda: None


def test_results_come_back_in_plan_order_and_sampling_never_overlaps():
    step = Recording()
    shards = make_shards(24, 4)
    got = [r.report.shard for r in LocalExecutor(Retry(0, ())).map(step, shards, setup)]
    assert got == [s.index for s in shards]
    assert [s for w, s in step.events if w == "sample"] == list(range(6))  # sampling in plan order
    assert step.overlaps == 0  # one sampler at a time


def test_a_shard_that_fails_for_good_is_named_and_gives_the_sampler_back():
    step = Recording(fail={1: 5})
    raised: list[BaseException] = []

    def run() -> None:
        try:
            list(LocalExecutor(Retry(1, (0.0,))).map(step, make_shards(12, 4), setup))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # a sampler never given back would hang shard 2 (and the job) for ever
    assert not worker.is_alive(), "the executor hung: the failed shard kept the sampler"
    assert len(raised) == 1 and isinstance(raised[0], ShardFailed)
    assert "shard-00001 (plan [4:8)) failed: RuntimeError: shard 1 broke" in str(raised[0])


def test_a_retry_keeps_the_sampler_so_shards_still_sample_in_plan_order():
    step = Recording(fail={1: 1})
    got = [r.report.shard for r in LocalExecutor(Retry(1, (0.0,))).map(step, make_shards(16, 4), setup)]
    assert got == [0, 1, 2, 3]
    assert [s for w, s in step.events if w == "sample"] == [0, 1, 1, 2, 3]  # shard 2 waits for shard 1's retry
    assert step.overlaps == 0


def test_a_driver_that_stops_reading_stops_the_shards_in_flight():
    step = Recording()
    results = LocalExecutor(Retry(0, ())).map(step, make_shards(40, 4), setup)
    assert next(results).report.shard == 0
    results.close()  # e.g. the decision of shard 0 failed
    assert len([1 for w, _ in step.events if w == "sample"]) <= 3  # nothing sampled beyond the shards in flight


@pytest.mark.parametrize("retries,delays,expected", [(2, (2.0, 10.0), [2.0, 10.0, 10.0]), (1, (), [0.0])])
def test_retry_delays_repeat_the_last(retries, delays, expected):
    assert [Retry(retries, delays).delay(i) for i in range(1, len(expected) + 1)] == expected
