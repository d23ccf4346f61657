"""Several devices on one machine, no server: one worker process per device, the one-device version."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from catalog import Catalog, RunRef
from flows.executors.devices import DevicesExecutor, job_devices
from flows.generate import generate_dataset
from flows.job.components import ComponentLoader
from flows.job.shard_step import ShardStep
from flows.settings import configure
from synthgen.plan import make_shards
from synthgen.spec import parse_spec
from tests.conftest import small_job

pytestmark = pytest.mark.long  # minutes of work: started first (tests/conftest.py)

RUN_COLUMNS = ["prefect_flow_run_id", "mlflow_run_id", "created_at"]  # differ by run, by design
DATASET = "digits-devices"


def _job(**generator) -> dict:
    # 3 classes x 4 images, one batch of 3 per shard: 4 shards; low thresholds so decisions happen.
    spec = small_job(DATASET, per_class=4, dedup={"real_dataset": None, "threshold": 0.7})
    spec["generator"].update(steps=2, batch_size=3, **generator)
    spec["output"]["shard_size"] = 3
    return spec


def _rows(data) -> tuple[list[list[str]], list]:
    cat = Catalog(data / "catalog")
    tables = [pq.read_table(cat.path(DATASET) / s.file) for s in cat.manifest(DATASET).shards]
    return [t["sample_id"].to_pylist() for t in tables], [t.drop_columns(RUN_COLUMNS) for t in tables]


def test_two_cpu_device_workers_commit_the_one_process_version(prefect_server, tmp_path):
    two = _job(devices=["cpu", "cpu"])
    assert job_devices(parse_spec(two)) == ["cpu", "cpu"]
    assert parse_spec(two).digest() == parse_spec(_job()).digest()  # devices are not the job's identity
    pooled = generate_dataset(two, str(tmp_path / "pooled"))
    single = generate_dataset(_job(), str(tmp_path / "single"))
    assert pooled["counts"] == single["counts"] and sum(single["counts"].values()) == 12
    assert single["counts"]["dropped_duplicate"]  # a decision to compare
    layout, tables = _rows(tmp_path / "pooled")
    single_layout, single_tables = _rows(tmp_path / "single")
    # 4 plan shards, each a training shard plus (when it dropped rows) an excluded one
    assert layout == single_layout and len(tables) >= 4 and sum(t.num_rows for t in tables) == 12
    for mine, theirs in zip(tables, single_tables):
        differ = [c for c in mine.column_names if not mine[c].equals(theirs[c])]
        assert not differ and mine.equals(theirs), differ  # images, seeds, provenance, embeddings, decisions


def test_each_device_worker_is_one_process_that_takes_whole_shards(tmp_path):
    job = parse_spec(_job(devices=["cpu", "cpu"]))
    shards = make_shards(job.total_images, job.output.shard_size)
    runs = RunRef(prefect_flow_run_id="t", mlflow_run_id=None)
    setup = ComponentLoader(job, str(configure(tmp_path).catalog))
    results = list(DevicesExecutor(["cpu", "cpu"]).map(ShardStep(job, runs), shards, setup))
    reports = [r.report for r in results]
    assert [r.shard for r in reports] == [s.index for s in shards] and all(r.rows == 3 for r in reports)
    assert len({r.pid for r in reports}) <= 2 and all(r.device == "cpu" for r in reports)
    assert all(len(r.samples) == 3 and r.samples[0].png for r in results)  # the rows come back to the driver


def test_a_worker_that_dies_is_replaced_and_its_shard_retried(tmp_path, monkeypatch):
    """SIGKILL (by the failpoint) of the worker sampling shard 1: a new worker redoes it; results as always."""
    job = parse_spec(_job(devices=["cpu", "cpu"]))
    shards = make_shards(job.total_images, job.output.shard_size)
    setup = ComponentLoader(job, str(configure(tmp_path).catalog))
    monkeypatch.setenv("SYNTHGEN_FAILPOINT", "sampling@2:kill")  # each worker dies at its second shard
    got = [r.report.shard for r in DevicesExecutor(["cpu", "cpu"]).map(ShardStep(job, RunRef()), shards, setup)]
    assert got == [s.index for s in shards]
