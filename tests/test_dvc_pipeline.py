"""dvc.yaml's model stages are up to date in a fresh clone: `dvc repro` / `dvc exp run` retrain nothing.

A change to a training stage's dependencies (scripts/train_*.py, the class
pipeline, synthgen/digits.py) without retraining or `dvc commit <stage>`
(when it cannot change the weights) left the lock stale: the README's
`dvc exp run -S demo...` then retrained the shipped generator for tens of
minutes and replaced its weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc")) if Path(sys.executable).with_name("dvc").exists() else "dvc"


def test_the_model_stages_are_locked_as_they_are():
    proc = subprocess.run([DVC, "status", "--json", "train_generator", "train_embedder"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout or "{}") == {}, f"stale dvc.lock: {proc.stdout}"
