"""The demo runs from an installed package: its job and params ship as package data, equal to the checkout's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

PACKAGED = REPO / "flows" / "demo"


def test_packaged_demo_files_agree_with_the_checkout():
    # The root params.yaml stays DVC's source of truth; the packaged copy must say the same.
    root = yaml.safe_load((REPO / "params.yaml").read_text())
    packaged = yaml.safe_load((PACKAGED / "params.yaml").read_text())
    assert packaged == {"demo": root["demo"]}, "copy params.yaml's demo section to flows/demo/params.yaml"
    assert (PACKAGED / "digits-demo.yaml").read_bytes() == (REPO / "jobs" / "digits-demo.yaml").read_bytes(), \
        "copy jobs/digits-demo.yaml to flows/demo/digits-demo.yaml"


def _install(tmp_path: Path) -> Path:
    """``pip install --no-deps --target`` of a copy of the source (not editable); returns the target."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for part in ("synthgen", "catalog", "flows"):
        shutil.copytree(REPO / part, src / part, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=600)
    shutil.rmtree(src)  # nothing of the source tree is left to fall back on
    return target


def test_installed_package_runs_the_demo_from_another_folder(tmp_path):
    target = _install(tmp_path)
    assert (target / "flows" / "demo" / "digits-demo.yaml").is_file() and (target / "flows" / "demo" / "params.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("SYNTHGEN_DATA", None)
    where = subprocess.run([sys.executable, "-c", "import flows.cli.app, catalog, synthgen; print(flows.cli.app.__file__, catalog.__file__, synthgen.__file__)"],
                           capture_output=True, text=True, env=env, cwd=elsewhere, check=True)
    assert all(p.startswith(str(target)) for p in where.stdout.split()), where.stdout  # not the checkout
    synthgen = [sys.executable, str(target / "bin" / "synthgen")]

    checked = subprocess.run([*synthgen, "demo", "--check"], capture_output=True, text=True, env=env, cwd=elsewhere,
                             timeout=300)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "digits-demo: valid" in checked.stdout
    assert not (elsewhere / "synthgen-data" / "catalog").exists() or not any((elsewhere / "synthgen-data" / "catalog").iterdir())

    # The whole demo, scaled down (2 images per class, 2 steps): ingest, the flow, a committed version.
    small = ["--set", "images_per_condition=2", "--set", "generator.steps=2", "--set", "generator.batch_size=4",
             "--set", "output.shard_size=8"]
    ran = subprocess.run([*synthgen, "demo", *small], capture_output=True, text=True, env=env, cwd=elsewhere,
                         timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "digits-demo -> digits-synth@1" in ran.stdout
    assert (elsewhere / "synthgen-data" / "catalog" / "digits-synth" / "HEAD").is_file()
