"""One data folder for all state, and the environment the services need.

Everything a run writes (catalog, MLflow database and artifacts, Prefect's
home and database, staging, indexes) lives under one folder, so two users or
two test runs never collide and a backup is one copy. Call ``configure``
before importing prefect or mlflow: both read their settings at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "SYNTHGEN_DATA"
DEFAULT_DATA = "synthgen-data"

# Telemetry off and sane timeouts for every service we start.
_SERVICE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_UI_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


ARTIFACT_ROOT_ENV = "SYNTHGEN_ARTIFACT_ROOT"
PUBLISH_ENV = "SYNTHGEN_PUBLISH_URL"


def publish_url() -> str | None:
    """Shared catalog every job publishes its version to (``s3://bucket/prefix`` or a path), if set."""
    return os.environ.get(PUBLISH_ENV) or None
RETRIES_ENV = "SYNTHGEN_SHARD_RETRIES"
RETRY_DELAYS_ENV = "SYNTHGEN_RETRY_DELAYS"


def retry_policy() -> tuple[int, list[float]]:
    """How often a failed shard is retried, and the backoff delays (seconds) between tries.

    Two retries after 2 s and 10 s by default: long enough for a transient
    error (a GPU out of memory next to another job, a storage hiccup) to
    clear, short enough not to stall a nightly run. ``$SYNTHGEN_SHARD_RETRIES``
    and ``$SYNTHGEN_RETRY_DELAYS`` (comma-separated) override them.
    """
    retries = int(os.environ.get(RETRIES_ENV, "2"))
    delays = [float(x) for x in os.environ.get(RETRY_DELAYS_ENV, "2,10").split(",") if x.strip()]
    return retries, delays or [0.0]


SHARD_POOL_ENV = "SYNTHGEN_SHARD_POOL"


def shard_pool() -> str | None:
    """The work pool whose workers generate the shards (``$SYNTHGEN_SHARD_POOL``); None: in-process.

    Read by the job's flow when no ``shard_pool`` parameter is given, so
    ``SYNTHGEN_SHARD_POOL=gpu synthgen run job.yaml`` runs a job distributed.
    """
    return os.environ.get(SHARD_POOL_ENV) or None


@dataclass(frozen=True)
class Paths:
    """Where each kind of state lives under the data folder."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a new MLflow experiment stores artifacts: $SYNTHGEN_ARTIFACT_ROOT (e.g. s3://bucket/mlflow,
        with $MLFLOW_S3_ENDPOINT_URL for a non-AWS server), else the data folder. An existing experiment
        keeps the location it was created with."""
        return os.environ.get(ARTIFACT_ROOT_ENV) or (self.mlflow / "artifacts").resolve().as_uri()


def resolve_data_dir(override: str | Path | None = None) -> Path:
    """CLI option, then $SYNTHGEN_DATA, then ./synthgen-data."""
    return Path(override or os.environ.get(DATA_ENV) or DEFAULT_DATA).expanduser().resolve()


def configure(data_dir: str | Path | None = None) -> Paths:
    """Create the data folder and point Prefect and MLflow at it (env defaults only)."""
    paths = Paths(resolve_data_dir(data_dir))
    for p in (paths.catalog, paths.staging, paths.mlflow, paths.prefect_home):
        p.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_ENV] = str(paths.root)
    for key, value in _SERVICE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(paths.prefect_home))
    return paths
