"""MLflow artifacts stay in the data folder after the folder is copied or moved ("a backup is one copy").

MLflow stores an experiment's artifact location, and each run's artifact URI,
as absolute paths in its database. A data folder copied elsewhere kept them:
runs in the copy wrote their artifacts into the original folder (or failed
once it was gone). When the store is the data folder's own SQLite file and
artifacts go to their default place beside it, the experiment and its runs
are pointed at the folder the database is in now, each time a run starts
there. An artifact root chosen on purpose ($SYNTHGEN_ARTIFACT_ROOT, an object
store, a tracking server) is never touched.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Experiment tag: "data-folder" when its artifacts belong beside the database, wherever that is.
ARTIFACTS_TAG = "synthgen.artifacts"
IN_DATA_FOLDER = "data-folder"
_SQLITE = "sqlite:///"


def folder_artifact_root(tracking_uri: str) -> str | None:
    """The default artifact root of a SQLite tracking store (``artifacts/`` beside the database), else None."""
    if not tracking_uri.startswith(_SQLITE):
        return None
    return (Path(tracking_uri[len(_SQLITE):]).parent / "artifacts").resolve().as_uri()


def _was_default(location: str, tags: dict[str, str]) -> bool:
    """Whether ``location`` was its data folder's default: tagged so, or (experiments made before the tag)
    a local ``.../mlflow/artifacts`` folder, the shape only the default has."""
    if tags.get(ARTIFACTS_TAG) == IN_DATA_FOLDER:
        return True
    return location.startswith("file://") and location.rstrip("/").endswith("/mlflow/artifacts")


def follow_data_folder(tracking_uri: str, artifact_root: str, experiment_id: str, location: str,
                       tags: dict[str, str]) -> bool:
    """Point a copied or moved data folder's experiment (and its runs) at the artifacts beside its database.

    Does nothing unless the store is SQLite, ``artifact_root`` is that
    store's default, and the experiment's location was the default of the
    folder it was made in but is not this one. Returns whether it moved them.
    """
    here = folder_artifact_root(tracking_uri)
    if here is None or artifact_root != here or location == here or not _was_default(location, tags):
        return False
    old = location.rstrip("/")
    with sqlite3.connect(tracking_uri[len(_SQLITE):], timeout=30) as con:
        con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ? AND artifact_location = ?",
                    (here, int(experiment_id), location))
        # Each run's URI starts with the experiment's old location: keep the rest (<run id>/artifacts).
        for table, column in (("runs", "artifact_uri"), ("logged_models", "artifact_location")):
            con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "  # noqa: S608 - fixed names
                        f"WHERE experiment_id = ? AND substr({column}, 1, ?) = ?",
                        (here, len(old) + 1, int(experiment_id), len(old), old))
    return True
