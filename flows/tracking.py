"""MLflow logging: one run per flow run, through ``MlflowClient`` with explicit ids.

The client API (not the fluent one) is used because it is thread-safe and
never depends on a process-global "active run".
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from flows.artifact_home import ARTIFACTS_TAG, IN_DATA_FOLDER, folder_artifact_root, follow_data_folder
from synthgen.spec import JobSpec

EXPERIMENT = "synthgen"
NOTE_TAG = "synthgen.note"  # why a run ended as it did, e.g. "process died; resumed by ..."


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            text = v if isinstance(v, str) else json.dumps(v)
            out[key] = text if len(text) <= 500 else text[:497] + "..."  # MLflow's param limit
    return out


_init_lock = threading.Lock()


def warm_up(tracking_uri: str, artifact_root: str, after: Callable[[], object] | None = None) -> threading.Thread:
    """Import MLflow and open its store (creating SQLite tables) in a background thread.

    A first run in a fresh data folder spends ~6 s on MLflow's import and
    database migrations; the CLI starts this while Prefect's server starts.
    ``after`` runs first in that thread (what the store must wait for).
    Errors are left for the flow's own ``Tracker`` to raise, in context.
    """

    def run() -> None:
        try:
            if after is not None:
                after()
            Tracker(tracking_uri, artifact_root)
        except Exception:  # noqa: BLE001 - raised again where the run starts
            pass

    thread = threading.Thread(target=run, name="synthgen-mlflow-warm-up", daemon=True)
    thread.start()
    return thread


class Tracker:
    """Creates and fills the MLflow run of one job."""

    def __init__(self, tracking_uri: str, artifact_root: str, experiment: str = EXPERIMENT):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        from mlflow import MlflowClient

        # One initialiser per process at a time: a fresh SQLite store runs its
        # migrations here, and ``warm_up`` may be doing just that in a thread.
        with _init_lock:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self._create_experiment(experiment, artifact_root)
        self.artifact_root = artifact_root
        self.run_id: str | None = None

    def _create_experiment(self, name: str, artifact_root: str) -> str:
        from mlflow.exceptions import MlflowException

        # A tracking server stores artifacts where it was told (--artifacts-destination, served over
        # HTTP); a local folder of this machine would be invisible to every other machine.
        remote = self.tracking_uri.startswith(("http://", "https://"))
        # Artifacts beside the database follow the data folder when it is copied or moved (flows.artifact_home).
        tags = {ARTIFACTS_TAG: IN_DATA_FOLDER} if artifact_root == folder_artifact_root(self.tracking_uri) else {}
        try:
            return self.client.create_experiment(name, artifact_location=None if remote else artifact_root, tags=tags)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            # Another job created it in between (two jobs starting at once against one server).
            return self.client.get_experiment_by_name(name).experiment_id

    @property
    def tracking_uri(self) -> str:
        return self.client.tracking_uri

    def start(self, spec: JobSpec, tags: dict[str, str] | None = None) -> str:
        """Open the run of a job and log its spec as params."""
        tags = {"synthgen.job_digest": spec.digest(), **(tags or {})}
        return self.start_run(spec.name, spec.model_dump(mode="json"), tags)

    def start_run(self, name: str, params: dict, tags: dict[str, str] | None = None) -> str:
        """Open a run with (nested) params flattened to dotted keys."""
        from mlflow.entities import Param

        # A copied or moved data folder: the run's artifacts go into it, not into the folder it was copied from.
        # Here, not when the store is opened: commands that only read (status) write nothing.
        exp = self.client.get_experiment(self.experiment_id)
        follow_data_folder(self.tracking_uri, self.artifact_root, exp.experiment_id, exp.artifact_location, exp.tags)
        self.run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags or {}).info.run_id
        flat = [Param(k, v) for k, v in _flatten(params).items()]
        for i in range(0, len(flat), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=flat[i : i + 100])
        return self.run_id

    def child(self, name: str, params: dict, tags: dict[str, str] | None = None) -> "Tracker":
        """A tracker for a new run nested under this one (MLflow's ``mlflow.parentRunId`` tag)."""
        kid = Tracker.__new__(Tracker)
        kid.client, kid.experiment_id, kid.artifact_root, kid.run_id = (
            self.client, self.experiment_id, self.artifact_root, None)
        kid.start_run(name, params, {"mlflow.parentRunId": self.run_id, **(tags or {})})
        return kid

    def log_metrics(self, metrics: dict[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_artifacts(self, directory: str | Path, folder: str | None = None) -> None:
        """Log every file under ``directory`` into the run's ``folder``."""
        self.client.log_artifacts(self.run_id, str(directory), folder)

    def log_dataset(self, name: str, digest: str, source: str, context: str) -> None:
        """Record a dataset version as an input ('training', 'reference') or 'output'."""
        import warnings

        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
            warnings.simplefilter("ignore")
            src = resolve_dataset_source(Path(source).resolve().as_uri())
        ds = MetaDataset(source=src, name=name, digest=digest[:36])
        tag = InputTag(key="mlflow.data.context", value=context)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(ds._to_mlflow_entity(), tags=[tag])])

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Tag an existing run (e.g. the run that made a version, when that version is exported)."""
        for k, v in tags.items():
            self.client.set_tag(run_id, k, v)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)
