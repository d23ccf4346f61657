"""The job's staging folder: the one module that knows its layout.

A job's staging folder (keyed by spec digest, so a rerun finds it) holds::

    basis.json                the version decided against, the real set's version, and the
                              head the decisions were last checked against (``flows.job.recheck``)
    shard-00003.decided.json  a decided shard: its final shard refs, counts and runs
    shards/<sha256>.parquet   decided shards, final bytes, moved into the catalog at the publish
    shard-00003.parquet       a shard a remote worker wrote undecided (work pools), or one kept
                              for a whole-job decision (``keep: quality``); the driver decides it
    shard-00003.run.json      what a work pool's shard run recorded (host, GPU slot, times)

Every file is written atomically, and a decision record only after its
shards, so a kill leaves a whole decision or none.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from catalog import RunRef, ShardRef
from catalog.atomic import atomic_write, write_parquet_atomic
from catalog.schema import SCHEMA
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


@dataclass(frozen=True)
class Staging:
    """Paths and records of one job's staging folder."""

    root: Path

    @classmethod
    def of(cls, paths: Paths, spec: JobSpec) -> "Staging":
        """The staging folder of ``spec``'s job under the data folder ``paths``."""
        return cls(paths.staging / spec.output.dataset / spec.digest()[:24])

    @property
    def shards_dir(self) -> Path:
        """Decided shards waiting for the publish (moved into the catalog by ``Catalog.commit``)."""
        return self.root / "shards"

    def staged_path(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.parquet"

    def decision_path(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.decided.json"

    def run_record_path(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.run.json"

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
        p = self.run_record_path(shard)
        return json.loads(p.read_text()) if p.is_file() else None

    def write_run_record(self, shard: Shard, record: dict) -> None:
        atomic_write(self.run_record_path(shard), json.dumps(record).encode())

    # -- undecided shards ------------------------------------------------------------
    def stage(self, shard: Shard, table: pa.Table) -> None:
        """Write a shard's full rows undecided (atomically: a kill leaves all of it or nothing)."""
        write_parquet_atomic(table, self.staged_path(shard))

    def staged_rows(self, shard: Shard) -> int | None:
        """Rows of the shard staged undecided, or None."""
        p = self.staged_path(shard)
        return pq.read_metadata(p).num_rows if p.is_file() else None

    def read_staged(self, shard: Shard, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.staged_path(shard), columns=columns, schema=None if columns else SCHEMA)

    def remove(self) -> None:
        """Drop the folder (after the commit: everything in it is in the catalog now)."""
        shutil.rmtree(self.root, ignore_errors=True)
