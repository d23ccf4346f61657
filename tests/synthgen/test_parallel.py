"""Post-processing on a pool of workers: same bytes at any pool size, bounded batches in flight."""

import io
import os
import threading

import numpy as np
import pyarrow.parquet as pq

from catalog import samples_to_table
from synthgen.engine import run_samples, run_stages
from synthgen.generators import load_generator
from synthgen.imaging import decode
from synthgen.parallel import default_workers, encode_pool, machine_cores
from synthgen.plan import make_plan
from synthgen.png import encode_pixels
from synthgen.records import Sample
from synthgen.spec import GeneratorSpec, parse_spec
from tests.conftest import small_job


def _shard_bytes(samples) -> bytes:
    for s in samples:
        s.created_at = None  # the only column that is the wall clock
    table = samples_to_table(samples).drop_columns(["created_at"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_pool_of_one_and_pool_of_two_write_byte_identical_shards(embedder):
    spec = parse_spec(small_job(per_class=8))  # 24 samples, batch 8: three batches
    gen = load_generator(GeneratorSpec(scheduler="dpm++2m", steps=3, batch_size=8), "class", [0, 1, 7])
    caption = lambda s: f"a handwritten digit {s.class_name}"  # noqa: E731
    one, two = make_plan(spec), make_plan(spec)
    run_samples(one, gen, embedder, caption=caption, workers=1)
    run_samples(two, gen, embedder, caption=caption, workers=2)
    assert _shard_bytes(one) == _shard_bytes(two)
    assert all(decode(s.png).size == (16, 16) for s in two)


def test_encode_work_runs_in_other_processes_with_the_same_bytes():
    pool = encode_pool(2)
    arr = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert pool.submit(os.getpid).result() != os.getpid()
    assert pool.submit(encode_pixels, arr, 1, "pillow").result() == encode_pixels(arr, 1, "pillow")
    assert encode_pool(1) is None  # one worker: inline, no pool


def test_at_most_workers_plus_one_batches_in_flight():
    lock, state = threading.Lock(), {"now": 0, "max": 0}
    release = threading.Event()

    def sample(batch):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])

    def finish(batch):
        release.wait(0.05)  # slower than sampling: the engine must wait, not queue everything
        with lock:
            state["now"] -= 1

    samples = [Sample(f"s{i}", "synthetic", plan_index=i) for i in range(40)]
    stats = run_stages(samples, [sample, finish], batch_size=2, workers=3)
    assert stats.images == 40 and state["now"] == 0
    assert state["max"] <= 4


def test_default_workers_leave_the_sampler_its_cores():
    cores = machine_cores()
    assert default_workers("cpu", 1) == max(1, cores - 1)
    assert default_workers("cpu", 64) == 1
    assert default_workers("cuda", 8) == max(1, cores - 1)
