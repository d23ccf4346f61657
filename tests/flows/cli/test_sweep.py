"""`synthgen sweep`: probes as scratch datasets, the measures, the files, MLflow runs, and bad grids."""

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from catalog import Catalog, ingest_folder, open_version
from flows.cli.app import app
from flows.settings import configure
from synthgen.spec import load_spec
from tests.conftest import small_job
from tests.flows.cli_process import synthgen

runner = CliRunner()


@pytest.fixture(scope="module")
def swept(tmp_path_factory, real_digits_dir, embedder):
    """One tiny sweep through the real CLI: 2 settings x 16 images of 2 classes against 40 real digits."""
    root = tmp_path_factory.mktemp("sweep")
    real = root / "real"
    for name in ("zero", "one"):
        shutil.copytree(real_digits_dir / name, real / name)
    (real / "classes.txt").write_text("zero\none\n")
    data = root / "data"
    paths = configure(data)
    ingest_folder(Catalog(paths.catalog), "digits-real", real, embedder.embed_images, embedder.name)
    spec = root / "job.yaml"
    spec.write_text(yaml.safe_dump(small_job("digits-mine", per_class=50, classes=(0, 1))))
    proc = synthgen(data, "sweep", str(spec), "--grid", "generator.guidance_scale=1.5,2", "--per-setting", "16",
                    "--min", "coverage=0", "--best", "recall", "--out", str(root / "out"))
    return {"proc": proc, "data": data, "paths": paths, "out": root / "out", "spec": spec}


def test_a_sweep_writes_table_plot_json_and_chosen_spec(swept):
    proc, out = swept["proc"], swept["out"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "sweep.json").read_text())
    assert [s["setting"] for s in doc["settings"]] == ["guidance_scale=1.5", "guidance_scale=2"]
    for s in doc["settings"]:
        assert s["rows"] > 0 and s["version"].startswith("digits-mine-sweep-") and s["version"].endswith("@1")
        for key in ("agreement", "precision", "recall", "coverage", "frechet", "diversity", "tstr_ratio",
                    "images_per_s"):
            assert isinstance(s[key], float), key
    assert doc["rule"]["text"] == "coverage >= 0; then the highest recall"
    best = max(doc["settings"], key=lambda s: s["recall"])  # ties: the earlier, as max() too
    assert doc["chosen"]["setting"] == best["setting"] and best["chosen"]
    chosen = load_spec(out / "chosen.yaml")  # the user's spec, full size, with the chosen setting
    assert chosen.output.dataset == "digits-mine" and chosen.images_per_condition == 50
    assert chosen.generator.guidance_scale == best["assignments"]["generator.guidance_scale"]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "| * | " + best["setting"] in (out / "sweep.md").read_text()
    assert best["setting"] in proc.stdout and "tstr ratio" in proc.stdout  # the table


def test_probes_are_scratch_datasets_the_users_dataset_gets_no_version(swept):
    cat = Catalog(swept["paths"].catalog)
    doc = json.loads((swept["out"] / "sweep.json").read_text())
    assert not cat.exists("digits-mine")
    probes = [s["version"].split("@")[0] for s in doc["settings"]]
    assert len(set(probes)) == 2 and all(cat.info(p)["origin"] == "synthetic" for p in probes)
    card = (cat.version_dir(probes[0], 1) / "card.md").read_text()
    assert "Training utility (linear probe" in card  # the figure is on every version's card


def test_mlflow_has_a_parent_run_and_a_child_run_per_setting(swept):
    from mlflow import MlflowClient

    client = MlflowClient(swept["paths"].tracking_uri)
    exp = client.get_experiment_by_name("synthgen")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("synthgen.sweep") == "parent"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id]
    assert sorted(r.data.params["generator.guidance_scale"] for r in kids) == ["1.5", "2"]
    assert all("tstr_ratio" in r.data.metrics and "quality.tstr_ratio" in r.data.metrics for r in kids)
    assert {"sweep.json", "sweep.png", "sweep.md", "chosen.yaml"} <= {
        a.path for a in client.list_artifacts(parent[0].info.run_id)}


def test_quality_of_a_probe_shows_the_training_utility_figure(swept):
    r = runner.invoke(app, ["--data-dir", str(swept["data"]), "quality",
                            json.loads((swept["out"] / "sweep.json").read_text())["settings"][0]["version"]])
    assert r.exit_code == 0 and "| TSTR / TRTR | TSTR | TRTR |" in r.output


@pytest.mark.parametrize("args, message", [
    (["--grid", "generator.steps=0,5"], "generator.steps: Input should be greater than or equal to 1"),
    (["--grid", "generator.stepz=5"], "generator.stepz: Extra inputs are not permitted"),
    (["--grid", "generator.steps"], "expected FIELD.PATH=V1,V2"),
    (["--grid", "output.dataset=x"], "the sweep sets it"),
    ([], "give at least one --grid"),
    (["--grid", "generator.steps=5", "--min", "accuracy=1"], "unknown measure 'accuracy'"),
    (["--grid", "generator.steps=5", "--classifier", "no_such_module_x:f"], "cannot import no_such_module_x"),
])
def test_bad_grids_are_one_line_errors_before_anything_runs(swept, args, message):
    cat = Catalog(swept["paths"].catalog)
    before = set(cat.names())
    r = runner.invoke(app, ["--data-dir", str(swept["data"]), "sweep", str(swept["spec"]), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and r.output.count("error:") == 1 and "Traceback" not in r.output
    assert set(cat.names()) == before


def test_a_users_classifier_judges_the_kept_images(swept, tmp_path, monkeypatch):
    from flows.job.sweep import agreement, load_classifier

    (tmp_path / "my_judge.py").write_text(
        "def first(names):\n    return lambda images: [names[0] if im.size == (16, 16) else '?' for im in images]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_spec(swept["spec"])
    judge = load_classifier("my_judge:first", ["zero", "one"])
    doc = json.loads((swept["out"] / "sweep.json").read_text())
    cat = Catalog(swept["paths"].catalog)
    ref = doc["settings"][0]["version"]
    zeros = open_version(cat, ref).table(["label_name"])["label_name"].to_pylist()
    assert agreement(ref, spec, cat, None, judge) == zeros.count("zero") / len(zeros)  # every image, as PIL
