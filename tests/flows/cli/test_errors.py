"""Bad input through the real CLI: one clear error, a non-zero exit, no traceback, the catalog untouched.

Each case runs ``python -m flows.cli`` as its own process against its own copy
of a small catalog (a real and a synthetic dataset, no models needed), and
checks the exit code, that the message names the bad field, file or
reference, that no traceback is printed, and that the catalog folder hashes
the same before and after. The cases run a few at a time, each a fork of one
interpreter that imported the CLI (``synthgen_runs``): most of a fresh
process's time would be that import. The usage errors and ``--debug`` below
run as fresh processes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from synthgen.model_files import EMBEDDED
from tests.conftest import small_job
from tests.flows.cli_process import MODEL_LIBRARIES, assert_clean_error, seed_data, synthgen, synthgen_runs
from tests.tree_hash import tree_hash


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Input files of every kind, and a seed data folder with datasets `real` and `synth`."""
    root = tmp_path_factory.mktemp("cli-errors")
    files = root / "in"
    files.mkdir()
    seed, good = seed_data(files)
    seed = shutil.move(seed, root / "seed")

    (files / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (files / "text.txt").write_text("just some words\n")
    (files / "list.yaml").write_text("- a\n- b\n")
    (files / "broken.yaml").write_text("name: [unclosed\n")
    (files / "empty-folder").mkdir()
    (files / "empty.yaml").write_text("")
    (files / "old.parquet").write_text("precious\n")  # an existing file export must not replace
    (files / "earlier-export" / "data").mkdir(parents=True)  # an export must not mix into an earlier one
    (files / "earlier-export" / "data" / "train-00000-of-00002.parquet").write_text("stale\n")
    # Models: a folder with only model_index.json, one without the UNet's weights, a CLIP without weights.
    half = files / "index-only"
    half.mkdir()
    shutil.copy(EMBEDDED["embedded:digits"] / "model_index.json", half)
    no_weights = files / "no-weights"
    shutil.copytree(EMBEDDED["embedded:digits"], no_weights)
    for f in (no_weights / "unet").glob("*.safetensors"):
        f.unlink()
    odd = files / "odd-pipeline"
    shutil.copytree(EMBEDDED["embedded:digits"], odd)
    index = json.loads((odd / "model_index.json").read_text())
    (odd / "model_index.json").write_text(json.dumps({**index, "_class_name": "NoSuchPipeline"}))
    clip = files / "clip-no-weights"
    shutil.copytree(EMBEDDED["embedded:digits-clip"], clip)
    (clip / "model.safetensors").unlink()
    # Ingest folders: only a non-image; images plus a non-image named .png; classes.txt escaping the folder.
    (files / "not-images" / "cls").mkdir(parents=True)
    (files / "not-images" / "cls" / "fake.png").write_text("not an image\n")
    mixed = files / "mixed"
    shutil.copytree(good / "zero", mixed / "zero")
    (mixed / "zero" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, no image
    escape = files / "escape"
    shutil.copytree(good / "one", escape / "one")
    (escape / "classes.txt").write_text("one\n../../etc\n")
    return {"root": root, "files": files, "seed": Path(seed)}


def job(world: dict, name: str, **changes) -> str:
    """A small valid job spec (guarding against `real`), with dotted-path ``changes``, written to a file."""
    spec = small_job("synth-out")
    spec["dedup"]["real_dataset"] = "real"
    for key, value in changes.items():
        node = spec
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    path = world["files"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


F = "files"  # placeholder: replaced by the input folder in each case's arguments


# (id, args, names the message must contain[, exit code]); "{F}" is the folder of input files.
CASES = [
    # run specs: files
    ("spec-missing", ["run", "{F}/nope.yaml"], ["nope.yaml", "no such job spec"]),
    ("spec-binary", ["run", "{F}/binary.yaml"], ["binary.yaml", "not a text file"]),
    ("spec-not-mapping", ["run", "{F}/text.txt"], ["text.txt", "mapping"]),
    ("spec-list", ["run", "{F}/list.yaml"], ["list.yaml", "mapping"]),
    ("spec-bad-yaml", ["run", "{F}/broken.yaml"], ["broken.yaml", "not valid YAML"]),
    ("spec-is-folder", ["run", "{F}/empty-folder"], ["empty-folder", "is a folder"]),
    ("spec-empty", ["run", "{F}/empty.yaml"], ["empty.yaml", "mapping"]),
    ("spec-unknown-field", ["run", "@ok", "--set", "generator.stepz=3"], ["generator.stepz", "Extra inputs"]),
    ("spec-section-as-value", ["run", "@ok", "--set", "generator=5"], ["generator"]),
    # run specs: fields and overrides
    ("spec-threshold", ["run", "@threshold"], ["dedup.threshold"]),
    ("spec-negative-class", ["run", "@negative-class"], ["conditioning.classes.0.id"]),
    ("spec-bad-set", ["run", "@ok", "--set", "steps"], ["--set 'steps'"]),
    ("spec-set-bad-value", ["run", "@ok", "--set", "generator.steps=-3"], ["generator.steps"]),
    ("spec-params-missing", ["run", "@ok", "--params", "{F}/nope.yaml:demo"], ["nope.yaml", "no such params file"]),
    ("spec-params-section", ["run", "@ok", "--params", "{F}/list.yaml:demo"], ["list.yaml"]),
    ("spec-json-target", ["run", "@ok", "--json", "{F}/no/such/dir/r.json"], ["--json", "r.json"]),
    # models, from their configs, before any service starts
    ("gen-missing", ["run", "@gen-missing"], ["generator.model", "/no/such/model", "does not exist"]),
    ("gen-not-pipeline", ["run", "@gen-empty"], ["generator.model", "empty-folder", "model_index.json"]),
    ("gen-incomplete", ["run", "@gen-index-only"], ["generator.model", "index-only", "not a complete diffusers model"]),
    ("gen-no-weights", ["run", "@gen-no-weights"], ["generator.model", "no-weights/unet", "no weights"]),
    ("gen-is-file", ["run", "@gen-file"], ["generator.model", "text.txt", "is a file"]),
    ("gen-hub-offline", ["run", "@gen-hub"], ["generator.model", "someorg/no-such-model", "HF_HUB_OFFLINE"]),
    ("gen-unknown-embedded", ["run", "@gen-embedded"], ["generator.model", "embedded:nope"]),
    ("gen-is-clip", ["run", "@gen-clip"], ["generator.model", "digits-clip", "model_index.json"]),
    ("gen-bad-scheduler", ["run", "@scheduler"], ["generator.scheduler", "FancyScheduler"]),
    ("gen-unknown-pipeline", ["run", "@gen-odd-pipeline"], ["generator.model", "'NoSuchPipeline'"]),
    ("class-out-of-range", ["run", "@class-range"], ["conditioning.classes", "[10, 12]", "10 classes"]),
    ("prompts-to-class-model", ["run", "@prompts"], ["conditioning.prompts", "class-conditional"]),
    ("emb-missing", ["run", "@emb-missing"], ["embedder.model", "/no/such/clip"]),
    ("emb-is-generator", ["run", "@emb-generator"], ["embedder.model", "digits-ddpm", "not a CLIP model"]),
    ("emb-no-weights", ["run", "@emb-no-weights"], ["embedder.model", "clip-no-weights", "no weights"]),
    ("schedule-gen-missing", ["schedule", "@gen-missing"], ["generator.model", "/no/such/model"]),
    ("schedule-bad-cron", ["schedule", "@ok", "--cron", "every day"], ["--cron", "every day"]),
    # catalog references
    ("real-unknown", ["run", "@real-unknown"], ["no dataset 'nope'", "known: real, synth"]),
    ("real-is-synthetic", ["run", "@real-synth"], ["dedup.real_dataset", "'synth'"]),
    ("output-is-real", ["run", "@output-real"], ["output.dataset", "'real'"]),
    ("diff-unknown-version", ["diff", "synth@1", "synth@7"], ["no version 7"]),
    ("diff-unknown-dataset", ["diff", "nope@1", "synth@1"], ["no dataset 'nope'"]),
    ("card-unknown-version", ["card", "synth@9"], ["no version 9"]),
    ("card-unknown-dataset", ["card", "nope"], ["no dataset 'nope'"]),
    ("verify-unknown-version", ["verify", "synth@9"], ["no version 9"]),
    ("verify-unknown-dataset", ["verify", "nope"], ["no dataset 'nope'"]),
    ("verify-bad-ref", ["verify", "synth@x"], ["'synth@x'", "NAME@VERSION"]),
    ("verify-empty-version", ["verify", "synth@"], ["bad dataset reference 'synth@'"]),
    ("load-leading-zero", ["load", "synth@01"], ["bad dataset reference 'synth@01'"]),
    ("mix-empty-version", ["mix", "synth@", "real@1", "--name", "m", "--ratio", "0.5"], ["'synth@'"]),
    ("verify-version-zero", ["verify", "synth@0"], ["'synth@0'"]),
    ("versions-unknown", ["versions", "nope"], ["no dataset 'nope'"]),
    ("load-unknown-version", ["load", "synth@3"], ["no version 3"]),
    ("export-unknown", ["export", "nope", "{F}/out"], ["no dataset 'nope'"]),
    ("dedup-report-unknown", ["dedup-report", "nope"], ["no dataset 'nope'"]),
    ("search-unknown", ["search", "nope", "a seven"], ["no dataset 'nope'"]),
    ("rededup-unknown", ["rededup", "nope", "--threshold", "0.9"], ["no dataset 'nope'"]),
    ("rededup-real", ["rededup", "real", "--threshold", "0.9"], ["rededup needs a synthetic dataset", "'real' is real"]),
    ("takedown-unknown", ["takedown", "nope", "--where", "label = 1", "--reason", "x"], ["no dataset 'nope'"]),
    ("takedown-empty-reason", ["takedown", "synth", "--where", "label = 1", "--reason", " "], ["non-empty --reason"]),
    ("mix-bad-name", ["mix", "synth@1", "real@1", "--name", "Bad Name", "--ratio", "0.5"], ["'Bad Name'"]),
    # files given to commands
    ("audit-unknown", ["audit", "nope"], ["no sample 'nope'"]),
    ("audit-empty", ["audit", ""], ["sample id or an image file", "empty"]),
    ("audit-folder", ["audit", "{F}/empty-folder"], ["empty-folder", "not a sample id nor a regular image file"]),
    ("audit-device", ["audit", "/dev/zero"], ["/dev/zero", "not a sample id nor a regular image file"]),
    ("audit-text-file", ["audit", "{F}/text.txt"], ["text.txt", "not an image"]),
    ("audit-binary-file", ["audit", "{F}/binary.yaml"], ["binary.yaml", "not an image"]),
    ("ingest-not-image", ["ingest", "{F}/not-images", "--name", "new-real"], ["cls/fake.png", "nothing was written"]),
    ("ingest-one-bad", ["ingest", "{F}/mixed", "--name", "new-real"], ["zero/broken.png", "--skip-bad"]),
    ("ingest-missing", ["ingest", "{F}/nope", "--name", "new-real"], ["nope", "not a folder"]),
    ("ingest-no-classes", ["ingest", "{F}/empty-folder", "--name", "new-real"], ["empty-folder", "no class"]),
    ("ingest-classes-escape", ["ingest", "{F}/escape", "--name", "new-real"], ["classes.txt", "../../etc"]),
    ("ingest-bad-name", ["ingest", "{F}/good", "--name", "BAD NAME"], ["'BAD NAME'"]),
    ("ingest-into-synthetic", ["ingest", "{F}/good", "--name", "synth"], ["'synth'", "synthetic"]),
    ("ingest-bad-embedder", ["ingest", "{F}/good", "--name", "new-real", "--embedder", "/no/such/clip"],
     ["--embedder", "/no/such/clip"]),
    ("export-into-missing-folder", ["export", "synth", "/proc/no/such/x.parquet"], ["x.parquet"]),
    ("export-jpeg-quality-0", ["export", "synth", "{F}/jpegs", "--format", "jpeg", "--quality", "0"],
     ["--quality", "between 1 and 95"]),
    ("export-quality-for-png", ["export", "synth", "{F}/pngs", "--quality", "80"], ["--quality", "--format jpeg"]),
    ("export-jpeg-to-parquet", ["export", "synth", "{F}/x.parquet", "--format", "jpeg"], ["x.parquet", "folder"]),
    ("export-empty-dest", ["export", "synth", ""], ["export destination is empty"]),
    ("export-over-parquet", ["export", "synth", "{F}/old.parquet"], ["old.parquet", "already exists"]),
    ("export-into-earlier-hf", ["export", "synth", "{F}/earlier-export", "--format", "hf"],
     ["earlier-export", "already holds files"]),
    ("export-into-earlier-pngs", ["export", "synth", "{F}/earlier-export"], ["earlier-export", "already holds files"]),
    ("export-under-a-file", ["export", "synth", "{F}/text.txt/sub"], ["text.txt is a file, not a folder"]),
    ("export-parquet-under-a-file", ["export", "synth", "{F}/text.txt/x.parquet"], ["text.txt is a file, not a folder"]),
    ("search-sheet-extension", ["search", "synth", "x", "--sheet", "{F}/x.txt"], ["--sheet", "must be a .png file"]),
    ("search-sheet-empty", ["search", "synth", "x", "--sheet", ""], ["--sheet is empty"]),
    ("search-sheet-no-folder", ["search", "synth", "x", "--sheet", "{F}/nodir/x.png"], ["nodir", "does not exist"]),
    ("dedup-report-png-extension", ["dedup-report", "synth", "--png", "{F}/x.txt"], ["--png", "must be a .png file"]),
    ("dedup-report-png-no-folder", ["dedup-report", "synth", "--png", "{F}/nodir/a.png"], ["nodir", "does not exist"]),
    ("query-empty", ["query", ""], ["empty query"]),
    ("query-only-semicolon", ["query", "   ;"], ["empty query"]),
    ("query-limit", ["query", "SELECT 1", "--limit", "0"], ["--limit"]),
    # numbers
    ("rededup-threshold-7", ["rededup", "synth", "--threshold", "7"], ["--threshold", "less than or equal to 1"]),
    ("rededup-threshold-0", ["rededup", "synth", "--threshold", "0"], ["--threshold", "greater than 0"]),
    ("rededup-threshold-nan", ["rededup", "synth", "--threshold", "nan"], ["--threshold"]),
    ("rededup-real-threshold", ["rededup", "synth", "--threshold", "0.9", "--real-threshold", "1.5"],
     ["--real-threshold"]),
    ("rededup-pixel-threshold", ["rededup", "synth", "--threshold", "0.9", "--pixel-threshold", "-1"],
     ["--pixel-threshold"]),
    ("rededup-min-clip", ["rededup", "synth", "--threshold", "0.9", "--min-clip-score", "3"], ["--min-clip-score"]),
    ("rededup-keep", ["rededup", "synth", "--threshold", "0.9", "--keep", "best"], ["--keep", "'best'"]),
    ("rededup-not-a-number", ["rededup", "synth", "--threshold", "high"], ["--threshold"]),
    ("mix-ratio", ["mix", "synth@1", "real@1", "--name", "m", "--ratio", "3"], ["synthetic share"]),
    ("status-limit", ["status", "--limit", "0"], ["--limit"]),
    ("load-limit", ["load", "synth", "--limit", "-1"], ["--limit"]),
    ("load-status", ["load", "synth", "--status", "bogus"], ["--status 'bogus'"]),
    ("verify-regenerate", ["verify", "synth", "--regenerate", "-4"], ["--regenerate"]),
    ("search-k", ["search", "synth", "x", "--k", "0"], ["--k"]),
    # remote URLs
    ("push-ftp", ["push", "synth", "ftp://host/path"], ["ftp://host/path", "unsupported URL"]),
    ("push-no-bucket", ["push", "synth", "s3://"], ["s3://", "bucket"]),
    ("push-bad-bucket", ["push", "synth", "s3://Bad_Bucket/x"], ["'Bad_Bucket'"]),
    ("push-to-file", ["push", "synth", "{F}/text.txt"], ["text.txt", "is a file"]),
    ("push-unknown", ["push", "nope", "{F}/remote"], ["no dataset 'nope'"]),
    ("pull-missing", ["pull", "{F}/no-remote", "synth"], ["no-remote", "no shared catalog"]),
    ("remote-versions-scheme", ["remote-versions", "s3:bucket"], ["s3:bucket"]),
    ("remote-endpoint", ["remote-versions", "s3://bucket", "--endpoint-url", "localhost:9000"], ["--endpoint-url"]),
    ("remote-endpoint-path", ["remote-load", "{F}", "synth", "--endpoint-url", "http://127.0.0.1:1"],
     ["--endpoint-url"]),
    ("remote-load-out-exists", ["remote-load", "{F}", "synth", "--out", "{F}/old.parquet"], ["--out", "already exists"]),
    ("remote-load-out-extension", ["remote-load", "{F}", "synth", "--out", "{F}/rows.csv"], ["--out", ".parquet"]),
    ("remote-verify-unknown", ["remote-verify", "{F}", "synth"], ["no dataset 'synth'"]),
]

JOBS = {
    "ok": {},
    "threshold": {"dedup.threshold": 7},
    "negative-class": {"conditioning.classes": [{"id": -1, "name": "x"}]},
    "gen-missing": {"generator.model": "/no/such/model"},
    "gen-empty": {"generator.model": "{F}/empty-folder"},
    "gen-index-only": {"generator.model": "{F}/index-only"},
    "gen-no-weights": {"generator.model": "{F}/no-weights"},
    "gen-file": {"generator.model": "{F}/text.txt"},
    "gen-hub": {"generator.model": "someorg/no-such-model"},
    "gen-embedded": {"generator.model": "embedded:nope"},
    "gen-clip": {"generator.model": "embedded:digits-clip"},
    "scheduler": {"generator.scheduler": "FancyScheduler"},
    "gen-odd-pipeline": {"generator.model": "{F}/odd-pipeline"},
    "class-range": {"conditioning.classes": [{"id": 3, "name": "three"}, {"id": 12, "name": "x"},
                                             {"id": 10, "name": "none"}]},
    "prompts": {"conditioning.classes": None, "conditioning.prompts": ["a seven"]},
    "emb-missing": {"embedder.model": "/no/such/clip"},
    "emb-generator": {"embedder.model": "embedded:digits"},
    "emb-no-weights": {"embedder.model": "{F}/clip-no-weights"},
    "real-unknown": {"dedup.real_dataset": "nope"},
    "real-synth": {"dedup.real_dataset": "synth"},
    "output-real": {"output.dataset": "real"},
}


def _expand(value, files: Path):
    return value.replace("{F}", str(files)) if isinstance(value, str) else value


@pytest.fixture(scope="module")
def results(world, request) -> dict:
    """Every selected case's process and whether its catalog folder is unchanged."""
    files = world["files"]
    chosen = {item.callspec.params["case"][0] for item in request.session.items
              if hasattr(item, "callspec") and "case" in item.callspec.params}
    specs = {name: job(world, name, **{k: _expand(v, files) for k, v in ch.items()}) for name, ch in JOBS.items()}

    cases = [c for c in CASES if c[0] in chosen]
    runs, before = [], {}
    for case_id, args, *_ in cases:
        data = world["root"] / f"data-{case_id}"
        shutil.copytree(world["seed"], data)
        before[case_id] = tree_hash(data / "catalog")
        runs.append((data, [specs[a[1:]] if a.startswith("@") else _expand(a, files) for a in args]))
    procs = synthgen_runs(runs, preload=MODEL_LIBRARIES)
    return {c[0]: (proc, tree_hash(data / "catalog") == before[c[0]]) for c, (data, _), proc in zip(cases, runs, procs)}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error_and_writes_nothing(results, case):
    case_id, _, names, *code = case
    proc, unchanged = results[case_id]
    assert_clean_error(proc, names, code[0] if code else 2)
    assert unchanged, f"{case_id}: the catalog folder changed"


USAGE = [  # caught by the CLI framework before a command runs
    (["search", "synth", "x", "--k", "0"], "Invalid value for '--k'"),
    (["verify", "synth", "--regenerate", "-1"], "Invalid value for '--regenerate'"),
    (["mix", "synth@1", "real@1", "-n", "m", "--ratio", "x"], "Invalid value for '--ratio'"),
    (["verify"], "Missing argument 'ref'"),
    (["verify", "synth", "--bogus"], "No such option: --bogus"),
    (["nope"], "No such command 'nope'"),
    (["--bogus", "datasets"], "No such option: --bogus"),
    (["datasets", "--data-dir", "x"], "No such option: --data-dir: it goes before the command, 'synthgen --data-dir DIR datasets"),
]


@pytest.mark.parametrize("args,message", USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_error_line(world, args, message):
    proc = synthgen(world["seed"], *args)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}") and "--help" in lines[0], proc.stderr


def test_debug_shows_the_traceback(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world["seed"], data)
    quiet = synthgen(data, "diff", "synth@1", "synth@7")
    loud = synthgen(data, "--debug", "diff", "synth@1", "synth@7")
    by_env = synthgen(data, "diff", "synth@1", "synth@7", env={"SYNTHGEN_DEBUG": "1"})
    assert "Traceback" not in quiet.stderr and quiet.returncode == 2
    for proc in (loud, by_env):
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "no version 7" in proc.stderr


def test_data_dir_that_is_a_file(world, tmp_path):
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file\n")
    proc = synthgen(not_a_folder, "datasets")
    assert_clean_error(proc, ["--data-dir", str(not_a_folder)])
    assert not_a_folder.read_text() == "a file\n"
