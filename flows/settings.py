"""One data folder for all state, and the environment the services need.

Everything a run writes (catalog, MLflow database and artifacts, Prefect's
home and database, staging, indexes) lives under one folder, so two users or
two test runs never collide and a backup is one copy. Call ``configure``
before importing prefect or mlflow: both read their settings at import time.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from catalog.files import catalog_url, local_root

DATA_ENV = "SYNTHGEN_DATA"
CATALOG_ENV = "SYNTHGEN_CATALOG"
ARTIFACT_ROOT_ENV = "SYNTHGEN_ARTIFACT_ROOT"
DEFAULT_DATA = "synthgen-data"

# Telemetry off and sane timeouts for every service we start.
_SERVICE_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_UI_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


class Settings(BaseSettings):
    """Everything synthgen takes from the environment, read once at the edge.

    The CLI (or a deployment's flow run, when it carries none) builds one
    from ``$SYNTHGEN_*`` and passes it down as a parameter; tasks never read
    the environment, so a scheduled run behaves by the settings it was given,
    not by whichever worker runs it. As a flow parameter it serialises to a
    plain dict, and every field of that dict wins over the worker's environment.
    """

    model_config = SettingsConfigDict(env_prefix="SYNTHGEN_", frozen=True, extra="ignore", populate_by_name=True)

    data: Path | None = Field(None, description="the data folder ($SYNTHGEN_DATA); default ./synthgen-data")
    catalog: str | None = Field(None, description="the catalog: a folder or s3://bucket/prefix ($SYNTHGEN_CATALOG); "
                                "default <data folder>/catalog")
    publish_url: str | None = Field(None, description="shared catalog every job publishes to (s3://bucket/prefix or a path)")
    shard_pool: str | None = Field(None, description="work pool whose workers generate the shards; None: in-process")
    ray_address: str | None = Field(None, description="Ray cluster whose actors generate the shards (host:port of its "
                                    "head, or ray://host:port); None: in-process. Not together with shard_pool")
    ray_workers: int | None = Field(None, ge=1, description="Ray actors to start; None: one per GPU of the cluster, "
                                    "else one per node with a CPU")
    # Two retries after 2 s and 10 s: long enough for a transient error (a GPU out of
    # memory next to another job, a storage hiccup) to clear, short enough not to stall a nightly run.
    shard_retries: int = Field(2, ge=0, description="how often a failed shard is retried")
    retry_delays: Annotated[list[float], NoDecode] = Field([2.0, 10.0], description="backoff (s), comma-separated")
    # Prefect's floor is 30 s. Two missed (plus a margin) and a pool's shard run counts as lost with its machine.
    shard_heartbeat_s: int = Field(60, ge=30, description="seconds between a pool shard run's heartbeats")
    artifact_root: str | None = Field(None, description="MLflow artifact root for new experiments (e.g. s3://bucket/mlflow)")
    tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI", description="MLflow tracking URI")
    mlflow_ui_url: str | None = Field(None, description="MLflow's web UI (e.g. http://127.0.0.1:5000): `synthgen ui` links runs there")
    prefect_ui_url: str | None = Field(None, description="Prefect's web UI (e.g. http://127.0.0.1:4200): `synthgen ui` links flow runs there")
    # C2PA signing identity for `export --credentials`; none: a local, untrusted chain per data folder.
    sign_cert: Path | None = Field(None, description="PEM certificate chain (leaf first) that signs content credentials")
    sign_key: Path | None = Field(None, description="PEM private key of sign_cert's leaf")
    sign_callback: str | None = Field(None, description="module:function signing bytes with a KMS/HSM (ES256)")

    @field_validator("catalog", mode="before")
    @classmethod
    def _no_blank_catalog(cls, v):
        # An empty $SYNTHGEN_CATALOG is a variable a script forgot to set, not "the default".
        if isinstance(v, str) and not v.strip():
            raise ValueError(f"${CATALOG_ENV} (or --catalog) is empty: name the catalog (a folder or "
                             "s3://bucket/prefix), or leave it unset (then <data folder>/catalog)")
        return v

    @field_validator("data", mode="before")
    @classmethod
    def _blank_is_unset(cls, v):
        # Path("") is the current directory: an empty $SYNTHGEN_DATA must not silently mean "here".
        # None here; resolve_data_dir then refuses the empty variable by name.
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _comma_separated(cls, v):
        if isinstance(v, str):
            return [float(x) for x in v.split(",") if x.strip()] or [0.0]
        return v

    def paths(self, data_dir: str | Path | None = None) -> "Paths":
        """The data folder's layout (``data_dir`` wins over ``data``), carrying the MLflow settings."""
        return Paths(resolve_data_dir(self.data if data_dir is None else data_dir), self.tracking_uri,
                     self.artifact_root, self.catalog)


@dataclass(frozen=True)
class Paths:
    """Where each kind of state lives under the data folder."""

    root: Path
    tracking: str | None = None  # from Settings; None: $MLFLOW_TRACKING_URI, else SQLite in the folder
    artifacts: str | None = None  # from Settings; None: $SYNTHGEN_ARTIFACT_ROOT, else the folder
    catalog_root: str | None = None  # from Settings; None: the folder's catalog/

    @property
    def catalog(self) -> Path | str:
        """The catalog's root: a URL (``s3://bucket/prefix``) as given, else a folder (default ``<root>/catalog``)."""
        if self.catalog_root is None:
            return self.root / "catalog"
        return catalog_url(self.catalog_root) or local_root(self.catalog_root).expanduser().resolve()

    @property
    def catalog_is_url(self) -> bool:
        """Whether the catalog lives at a URL (object storage), not in a folder here."""
        return isinstance(self.catalog, str)

    @property
    def cache(self) -> Path:
        """Verified local copies of shards read from a catalog at a URL (content-addressed; safe to delete)."""
        return self.root / "cache"

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
    def ui_cache(self) -> Path:
        """What ``synthgen ui`` derives once and reuses: per-version gallery indexes, thumbnails."""
        return self.root / "ui"

    @property
    def tracking_uri(self) -> str:
        return self.tracking or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.mlflow / 'mlflow.db'}"

    @property
    def artifact_root(self) -> str:
        """Where a new MLflow experiment stores artifacts: $SYNTHGEN_ARTIFACT_ROOT (e.g. s3://bucket/mlflow,
        with $MLFLOW_S3_ENDPOINT_URL for a non-AWS server), else the data folder. An existing experiment
        keeps the location it was created with, except the data folder's default, which follows the
        folder when it is copied or moved (``flows.artifact_home``)."""
        return self.artifacts or os.environ.get(ARTIFACT_ROOT_ENV) or (self.mlflow / "artifacts").resolve().as_uri()


class DataFolderError(ValueError):
    """The data folder is named by an empty value, or a command that only reads names one that does not exist."""


def resolve_data_dir(override: str | Path | None = None) -> Path:
    """CLI option, then $SYNTHGEN_DATA, then ./synthgen-data.

    An empty value is an error, not the default: it is most often a variable a script forgot to set,
    and Path("") would be the current directory (in a checkout, its ``catalog/`` is source code).
    """
    if override is not None and not str(override).strip():
        raise DataFolderError("--data-dir is empty: name the data folder, or leave the option out "
                              f"(then ${DATA_ENV}, else ./{DEFAULT_DATA})")
    env = os.environ.get(DATA_ENV)
    if override is None and env is not None and not env.strip():
        raise DataFolderError(f"${DATA_ENV} is set but empty: name the data folder, or unset it "
                              f"(then ./{DEFAULT_DATA})")
    return Path(override or env or DEFAULT_DATA).expanduser().resolve()


def resolve_paths(data_dir: str | Path | None = None, settings: Settings | None = None) -> Paths:
    """The data folder's paths, nothing created or configured; a file standing in its place is refused."""
    paths = (settings or Settings()).paths(data_dir)
    if paths.root.exists() and not paths.root.is_dir():  # the same message as when creating it
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(paths.root))
    return paths


def configure(data_dir: str | Path | None = None, settings: Settings | None = None, create: bool = True) -> Paths:
    """Create the data folder and point Prefect and MLflow at it (env defaults only).

    Called once at the edge (CLI, a flow run's start), before prefect or mlflow
    is imported; tasks take the ``Paths`` it returns, not the environment.
    ``create=False`` (commands that only read) refuses a folder that holds no
    catalog yet (``DataFolderError``), so a mistyped path is named, not started.
    """
    paths = resolve_paths(data_dir, settings)
    if not create and not paths.catalog_is_url and not paths.catalog.is_dir():
        if paths.catalog_root is not None:
            raise DataFolderError(f"catalog {paths.catalog} does not exist: check --catalog or ${CATALOG_ENV}")
        what = "holds no catalog/" if paths.root.is_dir() else "does not exist"
        raise DataFolderError(f"data folder {paths.root} {what}: check --data-dir or ${DATA_ENV}; "
                              "`synthgen ingest`, `run` or `demo` start a new one")
    local = [] if paths.catalog_is_url else [paths.catalog]
    for p in (*local, paths.staging, paths.mlflow, paths.prefect_home):
        p.mkdir(parents=True, exist_ok=True)
    os.environ[DATA_ENV] = str(paths.root)
    if paths.catalog_root is not None:  # child processes (device workers, a Prefect flow run) open the same one
        os.environ[CATALOG_ENV] = str(paths.catalog)
    for key, value in _SERVICE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(paths.prefect_home))
    return paths
