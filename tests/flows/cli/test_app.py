"""The CLI as a user runs it: a real subprocess for errors, Typer's runner for reads."""

import os
import subprocess
import sys

import pyarrow.compute as pc
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from catalog import open_version
from flows.cli.app import app
from synthgen.imaging import pixel_sha256, png_text
from tests.conftest import REPO, small_job
from tests.flows.job.test_rededup import guarded

runner = CliRunner()


def cli(data, *args):
    result = runner.invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)
    return result


def test_bad_spec_fails_fast_naming_the_field_and_writes_nothing(tmp_path):
    spec = small_job()
    spec["generator"]["steps"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    data = tmp_path / "data"
    env = {**os.environ, "SYNTHGEN_DATA": str(data)}
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", str(path)], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "generator.steps" in proc.stderr
    assert not any((data / "catalog").glob("*/dataset.json"))  # nothing written


def test_unknown_real_dataset_is_refused_before_models_load(tmp_path):
    spec = small_job(dedup={"real_dataset": "no-such-real"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = cli(tmp_path / "data", "run", str(path))
    assert result.exit_code == 2 and "no dataset 'no-such-real'" in result.output


def test_datasets_versions_load(demo_run):
    out = cli(demo_run["data"], "datasets").output
    assert "digits-small" in out and "digits-real" in out and "synthetic" in out
    out = cli(demo_run["data"], "versions", "digits-small").output
    assert "kept=" in out
    out = cli(demo_run["data"], "load", "digits-small@1", "--limit", "3").output
    assert "digits-small@1" in out and "sample_id" in out


def test_audit_prints_the_whole_lineage(demo_run):
    cat = demo_run["catalog"]
    sid = open_version(cat, "digits-small@1").table(["sample_id"])["sample_id"][0].as_py()
    result = cli(demo_run["data"], "audit", sid)
    assert result.exit_code == 0
    for field in ("model_weights_sha256", "seed", "scheduler_config", "mlflow_run_id", "prefect_flow_run_id",
                  "nn_similarity", "versions 1"):
        assert field in result.output.replace("\n", " ") or field in result.output
    assert cli(demo_run["data"], "audit", "nope").exit_code == 2  # an unknown name, like `verify nope`


def test_export_png_carries_provenance_and_parquet_round_trips(demo_run, tmp_path):
    assert cli(demo_run["data"], "export", "digits-small@1", str(tmp_path / "png")).exit_code == 0
    files = sorted((tmp_path / "png").rglob("*.png"))
    assert files
    img = Image.open(files[0])
    meta = png_text(img)
    assert meta["sample_id"] == files[0].stem and meta["dataset"] == "digits-small@1"
    assert meta["image_sha256"] == pixel_sha256(img)  # pixels survive the export
    assert cli(demo_run["data"], "export", "digits-small@1", str(tmp_path / "x.parquet")).exit_code == 0
    assert (tmp_path / "x.parquet").is_file()


def test_export_hf_folder_loads_with_datasets(demo_run, tmp_path):
    import datasets

    assert cli(demo_run["data"], "export", "digits-small@1", str(tmp_path / "hf"), "--format", "hf").exit_code == 0
    ds = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "cache"))
    kept = demo_run["catalog"].manifest("digits-small", 1).rows_by_status["kept"]
    assert ds.num_rows == kept and set(ds["status"]) == {"kept"} and set(ds["origin"]) == {"synthetic"}
    assert cli(demo_run["data"], "export", "digits-small@1", str(tmp_path / "y"), "--format", "zip").exit_code == 2


def test_verify_and_regenerate_from_provenance(demo_run):
    result = cli(demo_run["data"], "verify", "digits-small@1", "--regenerate", "6")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "6 identical, 0 differ" in result.output


def test_query_diff_takedown(demo_run, tmp_path):
    out = cli(demo_run["data"], "query", "SELECT label_name, count(*) AS n FROM digits_small_v1 GROUP BY 1").output
    assert "seven" in out and "(3 rows)" in out
    bad = cli(demo_run["data"], "query", "SELECT * FROM nowhere")
    assert bad.exit_code == 2 and "views:" in bad.output


def test_audit_traces_an_edited_file_back_to_its_sample(demo_run, tmp_path):
    cat = demo_run["catalog"]
    rows = open_version(cat, "digits-small@1").table(["sample_id", "image"]).to_pylist()
    from synthgen.imaging import decode

    for row in rows[::3]:  # several digits: look-alikes of the same class are in the catalog too
        img = decode(row["image"]["bytes"]).convert("RGB")
        img = img.resize((int(img.width * 1.1), int(img.height * 1.1)))  # resized by 10%
        path = tmp_path / "edited.jpg"
        img.save(path, quality=75)  # and re-encoded as JPEG q75
        result = cli(demo_run["data"], "audit", str(path))
        assert result.exit_code == 0, result.output
        assert "closest by CLIP then pixels" in result.output and row["sample_id"] in result.output
    png = tmp_path / "copy.png"
    decode(row["image"]["bytes"]).save(png)
    assert "exact pixel match" in cli(demo_run["data"], "audit", str(png)).output


def test_dedup_report_and_search(demo_run, tmp_path):
    result = cli(demo_run["data"], "dedup-report", "digits-small@1", "--png", str(tmp_path / "h.png"))
    assert result.exit_code == 0 and "0.95" in result.output and (tmp_path / "h.png").stat().st_size > 1000
    result = cli(demo_run["data"], "search", "digits-small@1", "a handwritten digit seven", "--k", "3",
                 "--sheet", str(tmp_path / "s.png"))
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line and line[0].isalnum() and "  0." in line]) == 3
    assert (tmp_path / "s.png").is_file()
    filtered = cli(demo_run["data"], "search", "digits-small@1", "a handwritten digit seven", "--where", "label = 1")
    ids = [line.split()[0] for line in filtered.output.splitlines() if "  0." in line or "  -0." in line]
    labels = {r["sample_id"]: r["label"] for r in open_version(demo_run["catalog"], "digits-small@1").table(["sample_id", "label"]).to_pylist()}
    assert ids and all(labels[i] == 1 for i in ids)


def test_rededup_makes_a_derived_version_from_stored_evidence(demo_run):
    from flows.generate import generate_dataset

    cat = demo_run["catalog"]
    generate_dataset(small_job(dataset="digits-rededup", per_class=4), str(demo_run["data"]))
    before = open_version(cat, "digits-rededup").table(status="all")
    result = cli(demo_run["data"], "rededup", "digits-rededup", "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    m = cat.manifest("digits-rededup")
    assert m.version == 2 and m.prov["wasGeneratedBy"]["activity"] == "rededup"
    after = open_version(cat, "digits-rededup").table(status="all")
    # newly dropped rows move to the excluded shards: same rows, in plan order again once sorted
    before, after = (t.take(pc.sort_indices(t["plan_index"])) for t in (before, after))
    assert after["sample_id"].to_pylist() == before["sample_id"].to_pylist()
    assert after["image_sha256"].to_pylist() == before["image_sha256"].to_pylist()  # nothing regenerated
    kept_before = before["status"].to_pylist().count("kept")
    assert after["status"].to_pylist().count("kept") < kept_before  # a much lower threshold drops more
    assert set(after["dedup_threshold"].to_pylist()) == {0.5}


def test_rededup_releases_blocked_copies_of_restricted_data_only_with_the_flag(tmp_path):
    data = tmp_path / "data"
    cat = guarded(data)  # `gen`: 2 rows blocked at real threshold 0.9 as copies of the restricted `private`
    result = cli(data, "rededup", "gen", "--threshold", "0.97", "--real-threshold", "0.99")
    assert result.exit_code == 2 and "--allow-restricted" in result.output and cat.head("gen") == 1
    result = cli(data, "rededup", "gen", "--threshold", "0.97", "--real-threshold", "0.99", "--allow-restricted")
    assert result.exit_code == 0 and "kept=4" in result.output, result.output


def test_status_lists_recent_runs(demo_run):
    out = cli(demo_run["data"], "status").output
    assert demo_run["result"]["mlflow_run_id"] in out and "FINISHED" in out and "digits-small@1" in out


@pytest.mark.parametrize("reused", [False, True])
def test_the_summary_of_a_reused_version_claims_no_generation_this_run(capsys, reused):
    from flows.cli.app import print_summary

    print_summary({
        "job": "j", "dataset": "d", "version": 1, "reused": reused,
        "counts": {"kept": 9, "dropped_duplicate": 1}, "files": [], "manifest": "m.json", "grid": "g.png",
        "metrics": {"images_per_s": 0.0 if reused else 50.0, "wall_s": 2.0, "startup_s": 1.0},
        "mlflow_run_id": "r", "mlflow_tracking_uri": "sqlite://", "prefect_flow_run_name": "p",
        "prefect_flow_run_id": "pid"})
    shown = " ".join(capsys.readouterr().out.split())
    assert ("none this run" in shown) == reused and ("images/s" in shown) != reused
