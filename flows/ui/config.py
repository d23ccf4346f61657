"""What the web app is given: the catalog, its cache folder, the restricted rule, links to other UIs."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_HOST = "127.0.0.1"  # loopback: the app shows a catalog's images to whoever can reach it
DEFAULT_PORT = 8765


class UiConfig(BaseModel):
    """Everything ``create_app`` needs; built by ``synthgen ui`` from its options and the settings."""

    model_config = ConfigDict(frozen=True)

    catalog: Path | str = Field(description="the catalog: a folder, or a URL such as s3://bucket/prefix (read only)")
    shard_cache: Path | None = Field(None, description="verified local copies of a URL catalog's shards "
                                                        "(the data folder's cache/; default: the user's cache)")
    cache: Path = Field(description="where gallery indexes and thumbnails are made once (the data folder's ui/)")
    allow_restricted: bool = Field(False, description="serve rows of restricted datasets (--allow-restricted)")
    mlflow_url: str | None = Field(None, description="MLflow's web UI, for run links")
    prefect_url: str | None = Field(None, description="Prefect's web UI, for flow-run links")
    embedder: str = Field("embedded:digits-clip", description="CLIP model for text search and tracing uploads")
    page_size: int = Field(60, ge=1, le=500, description="thumbnails per gallery page")
    thumb_px: int = Field(128, ge=16, le=512, description="thumbnail side")
    max_upload_bytes: int = Field(50 << 20, description="largest file the upload box accepts")
    warm_indexes: bool = Field(True, description="build the heads' gallery indexes in the background at start")
