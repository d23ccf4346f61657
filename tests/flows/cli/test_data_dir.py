"""Which commands may start a data folder: a reader given a mistyped or empty one names it and creates nothing."""

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli.app import app
from flows.cli.common import STARTS_DATA_FOLDER

runner = CliRunner()

# Every command that reads or changes an existing data folder, with arguments that pass its own checks.
NEEDS_A_DATA_FOLDER = [
    ["datasets"], ["versions", "x"], ["load", "x"], ["audit", "x"], ["verify", "x"], ["diff", "x@1", "x@2"],
    ["takedown", "x", "--where", "label = 1", "--reason", "r"], ["query", "SELECT 1"], ["card", "x"],
    ["dedup-report", "x"], ["search", "x", "a digit"], ["export", "x", "out"], ["quality", "x@1"],
    ["push", "x", "remote"], ["status"],
]


@pytest.mark.parametrize("args", NEEDS_A_DATA_FOLDER, ids=lambda a: a[0])
def test_a_command_that_needs_a_data_folder_names_a_missing_one_and_creates_nothing(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)  # "out" and "remote" are relative: neither may appear either
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "nodata"), *args])
    assert result.exit_code == 2, result.output
    assert f"error: data folder {tmp_path / 'nodata'} does not exist" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []


def test_an_empty_synthgen_data_is_an_error_not_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog").mkdir()  # a checkout's source package of that name is not a catalog
    for args, env in ((["datasets"], {"SYNTHGEN_DATA": ""}), (["-d", "", "datasets"], {})):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 2 and "empty" in result.output, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["catalog"]


def test_the_commands_that_start_a_data_folder_exist():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert STARTS_DATA_FOLDER <= names


def test_checking_a_job_or_refusing_an_ingest_creates_no_data_folder(tmp_path, monkeypatch):
    # `run --check` reads a data folder that does not exist as an empty catalog; a refused ingest (bad name,
    # bad folder) is refused before the folder it would start is created.
    from tests.conftest import small_job

    monkeypatch.chdir(tmp_path)
    job = tmp_path / "job.yaml"
    spec = small_job()
    spec["dedup"]["real_dataset"] = None
    job.write_text(yaml.safe_dump(spec))
    (tmp_path / "images").mkdir()  # no class folders
    data = str(tmp_path / "nodata")
    assert runner.invoke(app, ["--data-dir", data, "run", str(job), "--check"]).exit_code == 0
    spec["dedup"]["real_dataset"] = "some-real"
    job.write_text(yaml.safe_dump(spec))
    checked = runner.invoke(app, ["--data-dir", data, "run", str(job), "--check"])
    assert checked.exit_code == 2 and "no dataset 'some-real'" in checked.output
    for args in (["ingest", str(tmp_path / "images"), "-n", "new-real"], ["ingest", str(tmp_path / "images"), "-n", "../x"]):
        assert runner.invoke(app, ["--data-dir", data, *args]).exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "job.yaml"]
