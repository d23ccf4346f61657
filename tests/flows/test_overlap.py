"""Shards two at a time: sampling never overlaps sampling, stays in plan order, and the next shard samples
while the one before finishes. The shard task here is a real Prefect task that records what it does."""

from __future__ import annotations

import threading
import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.overlap import run_overlapped
from flows.shard import ShardReport
from synthgen.plan import make_shards
from synthgen.turns import SamplerTurn

events: list[tuple[str, int, float]] = []
_lock = threading.Lock()


def note(what: str, shard: int) -> None:
    with _lock:
        events.append((what, shard, time.monotonic()))


attempts: dict[int, int] = {}


@task(cache_policy=NO_CACHE)
def recording_shard(job, shard, paths, runs, turn: SamplerTurn) -> ShardReport:
    attempts[shard.index] = attempts.get(shard.index, 0) + 1
    if job == "fail" and shard.index == 1:
        turn.take()  # fails while holding the sampler: the turn must come back
        raise RuntimeError("shard 1 broke")
    turn.take()
    if job == "flaky" and shard.index == 1 and attempts[1] == 1:
        note("sample", shard.index)
        raise RuntimeError("shard 1 failed once")  # while sampling: its retry keeps the sampler
    note("sample", shard.index)
    time.sleep(0.5)  # longer than the tail: the next shard is queued at the sampler before this one is done
    note("sampled", shard.index)
    turn.give_back()
    time.sleep(0.3)  # the tail: last stages, decision, Parquet
    note("done", shard.index)
    return ShardReport(shard.index, len(shard), reused=False)


@flow
def overlapped(job: str, n: int) -> list[int]:
    shard_task = recording_shard.with_options(retries=1, retry_delay_seconds=0.5) if job == "flaky" else recording_shard
    return [r.shard for r in run_overlapped(shard_task, job, make_shards(n * 4, 4), None, None)]


def at(what: str, shard: int) -> float:
    return next(t for w, s, t in events if w == what and s == shard)


def test_next_shard_samples_during_the_tail_never_beside_another_sampler(prefect_server):
    events.clear()
    assert overlapped("ok", 4) == [0, 1, 2, 3]  # reports in plan order
    samples = [s for w, s, _ in events if w == "sample"]
    assert samples == [0, 1, 2, 3]  # sampling in plan order
    for i in range(3):
        assert at("sampled", i) <= at("sample", i + 1)  # one sampler at a time
        assert at("sample", i + 1) < at("done", i)  # ... and the next samples during this one's tail
        if i + 2 < 4:
            assert at("done", i) <= at("sample", i + 2) + 0.05  # at most two shards in flight


def test_a_shard_that_fails_raises_and_gives_the_sampler_back(prefect_server):
    events.clear()
    raised: list[BaseException] = []

    def run() -> None:
        try:
            overlapped("fail", 3)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(120)  # a sampler never given back would hang shard 2 (and the flow) for ever
    assert not worker.is_alive(), "the flow hung: the failed shard kept the sampler"
    assert len(raised) == 1 and "shard 1 broke" in str(raised[0])
    assert [s for w, s, _ in events if w == "sample"][:1] == [0]


def test_a_retry_keeps_the_sampler_so_shards_still_sample_in_plan_order(prefect_server):
    events.clear()
    attempts.clear()
    assert overlapped("flaky", 4) == [0, 1, 2, 3]
    assert [s for w, s, _ in events if w == "sample"] == [0, 1, 1, 2, 3]  # shard 2 waits for shard 1's retry
