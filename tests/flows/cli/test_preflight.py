"""Specs that pass the spec schema but could not run: `run` refuses them before any service starts.

Each case once passed ``run --check`` and then failed inside the flow, after
Prefect and MLflow had started and recorded a failed run. Now each is one
``error:`` line naming the field, exit 2, and the data folder is untouched
(no MLflow or Prefect database is created).
"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from synthgen.model_files import EMBEDDED
from tests.conftest import small_job
from tests.flows.cli_process import MODEL_LIBRARIES, assert_clean_error, synthgen_runs

# (id, --set assignments or a spec-file tweak, names the message must contain)
CASES = [
    ("caption-key", ['conditioning.caption_template="{name} {nope}"'], ["caption_template", "KeyError"]),
    ("caption-brace", ['conditioning.caption_template="{name} }"'], ["caption_template", "Single '}'"]),
    ("watermark-small", ["output.watermark={enabled: true}"], ["output.watermark", "16x16"]),
    ("height-17", ["generator.height=17"], ["generator.height: 17 is not a multiple of 4"]),
    ("bad-config-type", ["generator.model={bad}"], ["'sample_size' is 'abc'"]),
    ("random-weights", ["generator.model={random}"], ["not a valid safetensors file"]),
    ("device-missing", ["generator.device=cuda:99"], ["generator.device: cuda:99"]),
    ("steps-bool", ["generator.steps=true"], ["generator.steps", "not a boolean"]),
    ("class-names-twice", ["conditioning.classes=[{id: 0, name: a}, {id: 1, name: a}]"], ["class names must be unique"]),
    ("duplicate-key", "dup", ["key 'seed' is given twice"]),
    ("params-empty-section", "params", ["section name after ':' is empty"]),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("preflight")
    bad = root / "bad-config"
    shutil.copytree(EMBEDDED["embedded:digits"], bad)
    config = bad / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "sample_size": "abc"}))
    random = root / "random-weights"
    shutil.copytree(EMBEDDED["embedded:digits"], random)
    (random / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(bytes(range(256)) * 64)
    spec = root / "job.yaml"
    spec.write_text(yaml.safe_dump(small_job("pre-out", generator={"device": "cpu"}, dedup={"real_dataset": None})))
    dup = root / "dup.yaml"
    dup.write_text(spec.read_text() + "seed: 5\n")

    runs = []
    for case_id, change, _ in CASES:
        data = root / f"data-{case_id}"
        data.mkdir()
        if change == "dup":
            args = ["run", str(dup)]
        elif change == "params":
            args = ["run", str(spec), "--params", f"{spec}:"]
        else:
            sets = [a.replace("{bad}", str(bad)).replace("{random}", str(random)) for a in change]
            args = ["run", str(spec), *(x for a in sets for x in ("--set", a))]
        runs.append((data, args))
    procs = synthgen_runs(runs, preload=MODEL_LIBRARIES)  # each its own process, forked after the imports
    return {case[0]: (proc, sorted(p.name for p in data.rglob("*") if p.is_file()))
            for case, (data, _), proc in zip(CASES, runs, procs)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_unrunnable_spec_is_refused_before_services_start(results, case):
    proc, files = results[case[0]]
    assert_clean_error(proc, case[2])
    assert not [f for f in files if f.endswith(".db")], f"{case[0]}: a service database was written: {files}"
