"""A data folder is one copy: MLflow runs in a copied (or moved) folder keep their artifacts in it."""

from __future__ import annotations

import shutil

from flows.settings import Paths
from flows.tracking import Tracker


def _run_with_artifact(paths: Paths, tmp_path, name: str) -> str:
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    tracker.start_run(name, {"n": 1})
    note = tmp_path / f"{name}.txt"
    note.write_text(name)
    tracker.log_artifact(note)
    tracker.end()
    return tracker.run_id


def _files(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def test_runs_in_a_copied_data_folder_write_their_artifacts_into_the_copy(tmp_path):
    original, copy = Paths(tmp_path / "original"), Paths(tmp_path / "copy")
    first = _run_with_artifact(original, tmp_path, "first")
    shutil.copytree(original.root, copy.root)

    second = _run_with_artifact(copy, tmp_path, "second")
    assert _files(original.mlflow / "artifacts") == ["first.txt"]  # the original is untouched
    assert _files(copy.mlflow / "artifacts") == ["first.txt", "second.txt"]

    shutil.rmtree(original.root)  # a moved folder: the earlier run's artifacts are read from where it is now
    client = Tracker(copy.tracking_uri, copy.artifact_root).client
    assert client.get_experiment_by_name("synthgen").artifact_location == copy.artifact_root
    for run_id, name in ((first, "first.txt"), (second, "second.txt")):
        assert client.get_run(run_id).info.artifact_uri.startswith(copy.artifact_root)
        assert [f.path for f in client.list_artifacts(run_id)] == [name]


def test_an_artifact_root_chosen_on_purpose_is_kept(tmp_path):
    shared = (tmp_path / "shared-store").as_uri()
    original, copy = Paths(tmp_path / "original", artifacts=shared), Paths(tmp_path / "copy")
    _run_with_artifact(original, tmp_path, "first")
    shutil.copytree(original.root, copy.root)
    _run_with_artifact(copy, tmp_path, "second")
    client = Tracker(copy.tracking_uri, copy.artifact_root).client
    assert client.get_experiment_by_name("synthgen").artifact_location == shared
    assert _files(tmp_path / "shared-store") == ["first.txt", "second.txt"]
