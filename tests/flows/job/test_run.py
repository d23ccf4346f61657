"""``run_job``: the whole data path with no Prefect, MLflow or Typer, committing what ``synthgen run`` commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

from catalog import Catalog, ingest_folder
from tests.conftest import REPO, small_job

RUN_COLUMNS = ["prefect_flow_run_id", "mlflow_run_id", "created_at"]  # differ by run, by design

SCRIPT = """
import json, sys
from flows.job.run import run_job
result = run_job(json.loads(sys.argv[1]), sys.argv[2])
loaded = sorted(m for m in ("prefect", "mlflow", "typer") if m in sys.modules)
print(json.dumps({"version": result.version, "counts": result.counts, "reused": result.reused, "loaded": loaded}))
"""


def rows(catalog: Catalog, name: str) -> list:
    m = catalog.manifest(name, 1)  # other tests add versions to the shared demo folder
    return [pq.read_table(catalog.path(name) / s.file).drop_columns(RUN_COLUMNS) for s in m.shards]


def run_bare(data, spec: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(spec), str(data)], capture_output=True, text=True,
                          env=env, cwd=data.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_run_job_imports_no_service_and_commits_what_the_flow_commits(demo_run, real_digits_dir, embedder, tmp_path):
    data = tmp_path / "bare"
    ingest_folder(Catalog(data / "catalog"), "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    got = run_bare(data, small_job())
    assert got["loaded"] == [], f"run_job imported {got['loaded']}"
    assert got["version"] == 1 and not got["reused"] and got["counts"] == demo_run["result"]["counts"]
    mine, theirs = rows(Catalog(data / "catalog"), "digits-small"), rows(demo_run["catalog"], "digits-small")
    assert len(mine) == len(theirs) >= 3
    for a, b in zip(mine, theirs, strict=True):
        assert a.equals(b)  # pixels, seeds, provenance, embeddings, decisions and evidence: identical

    again = run_bare(data, small_job())  # a committed spec is answered from the catalog
    assert again == {**got, "reused": True}
