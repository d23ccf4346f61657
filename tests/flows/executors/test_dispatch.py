"""The driver's dispatch shared by the device and Ray executors: plan order, the hand-out bound, retries."""

from __future__ import annotations

import pytest

from flows.executors.base import Retry, ShardFailed
from flows.executors.dispatch import AHEAD, Dispatch
from flows.job.shard_step import ShardReport, ShardResult
from synthgen.plan import make_shards


def result(index: int) -> ShardResult:
    return ShardResult(ShardReport(index, 3, False))


def test_results_come_back_in_plan_order_and_no_shard_is_handed_out_past_the_bound():
    shards = make_shards(30, 3)  # 10 shards, 2 workers: at most AHEAD * 2 past the one waited for
    dispatch = Dispatch(shards, 2, Retry(0))
    running: list = []

    def turn(limit: int) -> None:
        while len(running) < 2 and (shard := dispatch.next(limit)) is not None:
            assert shard.index <= dispatch.delivered + AHEAD * 2  # the driver holds a bounded number of shards
            running.append(shard)
        done = running.pop()  # the later one ends first: results arrive out of order
        dispatch.done(done, result(done.index))

    got = [r.report.shard for r in dispatch.in_plan_order(turn)]
    assert got == [s.index for s in shards] and dispatch.all_delivered


def test_a_failed_shard_runs_again_first_then_fails_for_good_by_name():
    shards = make_shards(9, 3)
    dispatch = Dispatch(shards, 1, Retry(retries=1))
    first = dispatch.next(2)
    second = dispatch.next(2)
    dispatch.failed(first, "its Ray actor died (ActorDiedError)")
    assert dispatch.tries(first) == 1 and dispatch.next(2) is first  # in front of the later shards
    with pytest.raises(ShardFailed, match=r"shard-00000 \(plan \[0:3\)\) failed: its Ray actor died"):
        dispatch.failed(first, "its Ray actor died (ActorDiedError)")
    assert dispatch.tries(second) == 0 and not dispatch.all_delivered
