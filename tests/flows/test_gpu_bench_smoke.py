"""The GPU benchmark script runs end to end at tiny sizes on the CPU (``--smoke``): built models, bare loop, ``synthgen run``."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_gpu_bench_smoke_runs_both_models_through_synthgen_run(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect")}
    proc = subprocess.run([sys.executable, "bench/gpu/bench_gpu.py", "--smoke", "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"dit", "sd15"}
    for r in rows.values():
        assert r["images"] == r["batch"] and r["bare_img_s"] > 0 and r["flow_img_s"] > 0
    assert "| model" in proc.stdout  # the printed table
