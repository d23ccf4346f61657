"""Where a job's workers leave shards for its driver: the job's staging folder, or a prefix of the catalog's store.

A worker that generated a shard the driver did not decide in memory (a
work-pool worker on another machine, or a ``keep: quality`` job waiting for
all its shards) leaves the shard's rows and a record of the run here; the
driver reads them back in plan order. On one machine (or a shared mount)
that is the staging folder; with the catalog on object storage it is the
prefix ``catalog.layout.staging_key`` of the same store, so no two machines
need a shared path. Either way a shard appears whole or not at all (temp +
rename in a folder; one PUT on a store), and a rerun reuses what is there.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from catalog.atomic import atomic_write, write_parquet_atomic
from catalog.schema import SCHEMA


class ShardDrop(Protocol):
    """Undecided shards and run records, by shard name (``shard-00003``)."""

    def put_rows(self, shard: str, table: pa.Table) -> None: ...

    def rows(self, shard: str) -> int | None: ...

    def read(self, shard: str, columns: list[str] | None = None) -> pa.Table: ...

    def put_record(self, shard: str, record: dict) -> None: ...

    def record(self, shard: str) -> dict | None: ...

    def remove(self) -> None: ...


@dataclass(frozen=True)
class FolderDrop:
    """A folder on this machine (or a mount every worker shares)."""

    root: Path

    def put_rows(self, shard: str, table: pa.Table) -> None:
        """Write a shard's rows (atomically: a kill leaves all of it or nothing)."""
        write_parquet_atomic(table, self.root / f"{shard}.parquet")

    def rows(self, shard: str) -> int | None:
        """How many rows the shard left, or None when it left none."""
        p = self.root / f"{shard}.parquet"
        return pq.read_metadata(p).num_rows if p.is_file() else None

    def read(self, shard: str, columns: list[str] | None = None) -> pa.Table:
        """The shard's rows (``columns`` only, when given)."""
        return pq.read_table(self.root / f"{shard}.parquet", columns=columns, schema=None if columns else SCHEMA)

    def put_record(self, shard: str, record: dict) -> None:
        """Write what the shard's run recorded (host, GPU slot, times)."""
        atomic_write(self.root / f"{shard}.run.json", json.dumps(record).encode())

    def record(self, shard: str) -> dict | None:
        """What the shard's run recorded, or None."""
        p = self.root / f"{shard}.run.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def remove(self) -> None:
        """Delete every shard and record left here."""
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass(frozen=True)
class StoreDrop:
    """A prefix of an object store (``files``: an fsspec filesystem rooted at the catalog, as ``Storage.files``)."""

    files: Any
    prefix: str

    def key(self, name: str) -> str:
        """The store key of ``name`` under this prefix."""
        return f"{self.prefix}/{name}"

    def put_rows(self, shard: str, table: pa.Table) -> None:
        """One PUT of the whole file: readers see all of it or nothing."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=4096)  # as write_parquet_atomic
        self.files.pipe_file(self.key(f"{shard}.parquet"), buf.getvalue())

    def rows(self, shard: str) -> int | None:
        """How many rows the shard left, or None when it left none."""
        try:
            with self.files.open(self.key(f"{shard}.parquet"), "rb") as f:
                return pq.read_metadata(f).num_rows
        except FileNotFoundError:
            return None

    def read(self, shard: str, columns: list[str] | None = None) -> pa.Table:
        """The shard's rows (``columns`` only, when given)."""
        with self.files.open(self.key(f"{shard}.parquet"), "rb") as f:
            return pq.read_table(f, columns=columns, schema=None if columns else SCHEMA)

    def put_record(self, shard: str, record: dict) -> None:
        """Write what the shard's run recorded (one PUT)."""
        self.files.pipe_file(self.key(f"{shard}.run.json"), json.dumps(record).encode())

    def record(self, shard: str) -> dict | None:
        """What the shard's run recorded, or None."""
        try:
            return json.loads(self.files.cat_file(self.key(f"{shard}.run.json")))
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        """Delete the prefix: every shard and record left under it."""
        try:
            self.files.rm(self.prefix, recursive=True)
        except FileNotFoundError:
            pass
