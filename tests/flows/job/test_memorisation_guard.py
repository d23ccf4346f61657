"""Planted copies of real digits, injected into a run as if generated, are all blocked."""

import numpy as np
from PIL import Image

from catalog import Catalog, RunRef, open_version, samples_to_table
from flows.settings import configure
from flows.job.components import load_guard, load_job_embedder
from flows.job.run import run_job
from flows.job.staging import Staging
from synthgen.imaging import decode
from synthgen.plan import make_plan, make_shards
from synthgen.spec import parse_spec
from synthgen.stages import Embed, Encode, Guard, Score
from tests.conftest import small_job


def transforms(img: Image.Image, rng) -> list[np.ndarray]:
    """Shifted by a pixel, noisy, lower contrast, and all three: (H, W, 1) floats in [0, 1]."""
    a = np.asarray(img, dtype=np.float32) / 255
    out = [np.roll(a, 1, axis=1), np.clip(a + rng.normal(0, 0.03, a.shape), 0, 1), a * 0.85,
           np.clip(np.roll(a, -1, axis=0) * 0.9 + rng.normal(0, 0.03, a.shape), 0, 1)]
    return [x[..., None] for x in out]


def plant_copies(spec, shard, paths, real: list[dict], rng) -> list[int]:
    """Stage ``shard`` as transformed copies of randomly picked ``real`` rows; returns the picks."""
    plan = make_plan(spec, shard.start, shard.stop)
    picks = rng.choice(len(real), len(plan), replace=False)
    arrays = np.stack([transforms(decode(real[i]["image"]["bytes"]), rng)[n % 4] for n, i in enumerate(picks)])
    for sample, arr in zip(plan, arrays):  # the planted copies stand in for the generate stage
        sample.pixels = arr
    for stage in (Encode(), Embed(load_job_embedder(spec)), Guard(load_guard(spec, Catalog(paths.catalog))), Score()):
        stage(plan)
    Staging.of(paths, spec).stage(shard, samples_to_table(plan))
    return list(picks)


def test_planted_copies_blocked_ordinary_samples_pass(demo_run):
    paths = configure(demo_run["data"])
    job = small_job(dataset="digits-guard", per_class=10, classes=tuple(range(10)))
    job["output"]["shard_size"] = 24
    job["images_per_condition"] = 12  # 120 samples: shards of 24, the last 24 become planted copies
    spec = parse_spec(job)
    shards = make_shards(spec.total_images, spec.output.shard_size)
    runs = RunRef(prefect_flow_run_id="guard-test", mlflow_run_id=None)
    # plant: stage the last shard as transformed copies of real digits (the driver decides it in plan order)
    real = open_version(demo_run["catalog"], "digits-real").table(["sample_id", "image"]).to_pylist()
    last = shards[-1]
    picks = plant_copies(spec, last, paths, real, np.random.default_rng(0))
    report = run_job(spec, paths=paths, runs=runs).commit  # the other shards through the real engine
    rows = open_version(demo_run["catalog"], f"digits-guard@{report.version}").table(status="all").to_pylist()
    rows.sort(key=lambda r: r["plan_index"])  # kept and excluded rows live in separate shards
    planted = rows[last.start :]
    ordinary = rows[: last.start]
    assert all(r["status"] == "blocked_real_copy" for r in planted), [r["drop_reason"] for r in planted]
    for r, i in zip(planted, picks):  # the evidence names the right real image
        assert r["real_pixel_nn_id"] == real[i]["sample_id"] and r["real_pixel_distance"] <= 0.24
    false_blocks = sum(r["status"] == "blocked_real_copy" for r in ordinary) / len(ordinary)
    print(f"false-block rate on {len(ordinary)} ordinary samples: {false_blocks:.3f}")
    assert false_blocks <= 0.10
    assert all(r["real_pixel_distance"] is not None for r in rows)
