"""Version manifests: the small, immutable file that defines a dataset version.

A manifest lists the version's shards (content hashes, row counts), its
parent and the parent manifest's hash (a hash chain back to version 1), the
job spec and run ids that produced the new rows, and how the version was
derived, in W3C PROV terms (used / wasGeneratedBy / wasDerivedFrom).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from synthgen.records import KEPT


Role = Literal["train", "excluded"]


class ShardRef(BaseModel):
    """One immutable Parquet shard, named by the sha256 of its bytes.

    ``role``: "train" shards are what a trainer reads (``DatasetVersion.files``);
    "excluded" shards hold the dropped and blocked rows with their evidence
    (same schema), for audit, rededup and the card. Manifests written before
    the split have no role: their shards read as "train" and hold rows of
    every status, which readers still filter on ``status``.
    """

    model_config = ConfigDict(extra="forbid")

    file: str  # relative to the dataset folder, e.g. shards/ab12....parquet
    sha256: str
    rows: int
    rows_by_status: dict[str, int] = Field(default_factory=dict)
    role: Role = "train"

    @property
    def only_kept(self) -> bool:
        """Whether the manifest says every row is kept (so none is a blocked copy); a shard listed
        without counts may hold any status."""
        return bool(self.rows_by_status) and set(self.rows_by_status) <= {KEPT}


class RunRef(BaseModel):
    """The orchestration and tracking runs that produced rows of a version."""

    prefect_flow_run_id: str | None = None
    mlflow_run_id: str | None = None


class Manifest(BaseModel):
    """A dataset version. Never modified once written."""

    model_config = ConfigDict(extra="forbid")

    format: int = 1
    dataset: str
    version: int
    origin: Literal["real", "synthetic", "mixed"]
    # dataset.json's flag, sealed into the hash chain: a dataset.json edited to drop it is caught by readers
    restricted: bool = False
    parent: int | None = None
    parent_sha256: str | None = None
    created_at: str
    shards: list[ShardRef]
    added_shards: list[str] = Field(default_factory=list, description="sha256 of shards new in this version")
    rows: int = 0
    rows_by_status: dict[str, int] = Field(default_factory=dict)
    job_digest: str | None = None
    job: dict | None = None
    runs: list[RunRef] = Field(default_factory=list)
    embedding_model: str | None = None
    message: str = ""
    prov: dict = Field(default_factory=dict, description="W3C PROV: wasGeneratedBy, used, wasDerivedFrom")

    def to_bytes(self) -> bytes:
        return (self.model_dump_json(indent=2) + "\n").encode()


def release_record(m: Manifest) -> dict | None:
    """Who released version ``m`` of a restricted dataset and why (``catalog.release``); None if it is not one."""
    gen = m.prov.get("wasGeneratedBy") or {}
    return gen if gen.get("activity") == "release" and not m.restricted else None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
