"""The job's staging folder: the one module that knows its layout.

A job's staging folder (keyed by spec digest, so a rerun finds it) holds::

    basis.json                the version decided against, the real set's version, and the
                              head the decisions were last checked against (``flows.job.recheck``)
    shard-00003.decided.json  a decided shard: its final shard refs, counts and runs
    shards/<sha256>.parquet   decided shards, final bytes, moved into the catalog at the publish
    shard-00003.parquet       a shard a remote worker wrote undecided (work pools), or one kept
                              for a whole-job decision (``keep: quality``); the driver decides it
    shard-00003.run.json      what a work pool's shard run recorded (host, GPU slot, times)

The last two are the job's shard drop (``flows.job.shard_drop``): in this
folder, or, with the catalog on object storage, under the store's
``_staging/<dataset>/<job>/`` prefix, where workers on other machines
leave them. Decisions stay with the driver.

Every file is written atomically, and a decision record only after its
shards, so a kill leaves a whole decision or none.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from catalog import RunRef, ShardRef
from catalog.atomic import atomic_write
from catalog.layout import staging_key
from catalog.storage import Storage
from flows.job.shard_drop import FolderDrop, ShardDrop, StoreDrop
from flows.settings import Paths
from synthgen.plan import Shard
from synthgen.spec import JobSpec


class Basis(BaseModel):
    """What a job's decisions are relative to (``basis.json``)."""

    parent: int | None  # the dataset version decided against (None: the first version)
    real: str | None  # the real set's version ('name@N'), or None
    checked: int | None  # the head the decisions hold against: the parent, until a recheck moves it


class Decision(BaseModel):
    """One decided shard (``shard-NNNNN.decided.json``)."""

    shard: int
    refs: list[ShardRef]  # its training shard, then its excluded shard (either may be absent)
    counts: dict[str, int]
    runs: list[RunRef]  # the (Prefect, MLflow) runs that generated its rows
    kept_by_condition: dict[int, int] = {}  # kept rows by condition position: what the plan's next round asks from


DRIVER_RECORD = "driver"  # <drop>/driver.run.json: refreshed by a waiting driver (never a shard's name)


@dataclass(frozen=True)
class Staging:
    """Paths and records of one job's staging folder, and its shard drop (default: the folder itself)."""

    root: Path
    drop: ShardDrop | None = None

    @classmethod
    def of(cls, paths: Paths, spec: JobSpec, store: Storage | None = None) -> "Staging":
        """The staging of ``spec``'s job under the data folder ``paths``; ``store``: the catalog's store when
        the catalog is at a URL (the shard drop is then on it)."""
        job = spec.digest()[:24]
        drop = StoreDrop(store.files, staging_key(spec.output.dataset, job)) if store is not None else None
        return cls(paths.staging / spec.output.dataset / job, drop)

    @property
    def shards_drop(self) -> ShardDrop:
        """Where undecided shards and run records are left."""
        return self.drop or FolderDrop(self.root)

    @property
    def shards_dir(self) -> Path:
        """Decided shards waiting for the publish (moved into the catalog by ``Catalog.commit``)."""
        return self.root / "shards"

    def decision_path(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.decided.json"

    # -- records -------------------------------------------------------------------
    def read_basis(self) -> Basis | None:
        p = self.root / "basis.json"
        return Basis.model_validate_json(p.read_bytes()) if p.is_file() else None

    def write_basis(self, basis: Basis) -> None:
        atomic_write(self.root / "basis.json", basis.model_dump_json().encode())

    def read_decision(self, shard: Shard) -> Decision | None:
        p = self.decision_path(shard)
        return Decision.model_validate_json(p.read_bytes()) if p.is_file() else None

    def write_decision(self, shard: Shard, decision: Decision) -> None:
        atomic_write(self.decision_path(shard), decision.model_dump_json().encode())

    def read_run_record(self, shard: Shard) -> dict | None:
        return self.shards_drop.record(shard.name)

    def write_run_record(self, shard: Shard, record: dict) -> None:
        self.shards_drop.put_record(shard.name, record)

    def mark_driver_alive(self, record: dict) -> None:
        """Leave (refresh) the driver's own record beside the shards': ``synthgen gc`` keeps a staging
        with a young object, so a driver waiting long for one shard keeps the others."""
        self.shards_drop.put_record(DRIVER_RECORD, record)

    # -- undecided shards ------------------------------------------------------------
    def stage(self, shard: Shard, table: pa.Table) -> None:
        """Leave a shard's full rows undecided (whole or not at all)."""
        self.shards_drop.put_rows(shard.name, table)

    def staged_rows(self, shard: Shard) -> int | None:
        """Rows of the shard staged undecided, or None."""
        return self.shards_drop.rows(shard.name)

    def read_staged(self, shard: Shard, columns: list[str] | None = None) -> pa.Table:
        return self.shards_drop.read(shard.name, columns)

    def remove(self) -> None:
        """Drop the folder and the shard drop (after the commit: everything in them is in the catalog now)."""
        if self.drop is not None:
            self.drop.remove()
        shutil.rmtree(self.root, ignore_errors=True)
