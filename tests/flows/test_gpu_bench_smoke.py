"""The GPU benchmark script runs end to end at tiny sizes on the CPU (``--smoke``): built models, bare loop, ``synthgen run``."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.long  # a minute of CPU: started first (tests/conftest.py), not left to run alone at the end


def test_gpu_bench_smoke_runs_both_models_through_synthgen_run(prefect_server, tmp_path):
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "gpu.json"
    # Its two `synthgen run`s use the session's Prefect server rather than each starting a temporary one
    # (~12 s each; the temporary-server path is test_demo_package's). Sizes are already tiny: the rest is
    # the two processes' start-up.
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, "bench/gpu/bench_gpu.py", "--smoke", "--json", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"dit", "sd15"}
    for r in rows.values():
        assert r["images"] == r["batch"] and r["bare_img_s"] > 0 and r["flow_img_s"] > 0
    assert "| model" in proc.stdout  # the printed table
