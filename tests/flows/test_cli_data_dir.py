"""Which commands may start a data folder: a reader given a mistyped or empty one names it and creates nothing."""

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_common import STARTS_DATA_FOLDER

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
