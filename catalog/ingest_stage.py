"""Ingest's staging folder: shards written as they fill, reused by a rerun of the same ingest.

One folder per ingest, keyed by a digest of what decides its rows (``ingest_key``: the dataset, the
source, its classes, every file's path, size and change marker, the embedder, the shard plan)::

    <staging>/<dataset>/<key>/.lock                 held while an ingest runs here
    <staging>/<dataset>/<key>/shard-000003.json     shard 3 is finished (written last: it names the files below)
    <staging>/<dataset>/<key>/<sha256>.parquet      its rows, content-addressed (moved into the catalog on commit)
    <staging>/<dataset>/<key>/<sha256>.thumbs.u8    its rows' pixel-guard thumbnails, row for row, grey (raw uint8)

A shard covers a fixed range of the file list (``plan_shards``), and its rows are a function of those
files alone, so a shard finished before a kill is the shard an uninterrupted ingest writes. Nothing
here is in the catalog: the commit moves the Parquet files in and publishes the version.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from catalog.atomic import TMP_PREFIX, atomic_write, replace_synced, temp_path
from catalog.ingest_source import IngestError, SourceFile
from catalog.layout import shard_file
from catalog.manifest import ShardRef, sha256_file
from catalog.schema import SCHEMA
from synthgen.failpoints import failpoint
from synthgen.memorisation import THUMB, standardise_many
from synthgen.records import KEPT

FORMAT = "ingest-2"  # part of the key: a change to how rows are made must not reuse older staged shards
GROUP_ROWS = 4096  # Parquet row group: as the catalog's other shards
GROUP_BYTES = 64 << 20  # ... or fewer rows of large files: what a row group holds in memory while it is written
THUMB_PART_ROWS = 16_384  # staged thumbnails handed to the guard at a time (16 MB standardised), whatever the shard's size


def plan_shards(files: list[SourceFile], max_rows: int, max_bytes: int) -> list[range]:
    """Consecutive ranges of ``files``: a shard closes at ``max_rows`` files or ``max_bytes`` listed bytes."""
    plan, start, size = [], 0, 0
    for i, f in enumerate(files):
        if i > start and (i - start >= max_rows or size + max(f.size, 0) > max_bytes):
            plan.append(range(start, i))
            start, size = i, 0
        size += max(f.size, 0)
    plan.append(range(start, len(files)))
    return plan


def ingest_key(name: str, source: str, classes: list[str], files: list[SourceFile], embedding_model: str | None,
               plan: list[range]) -> str:
    """sha256 of everything that decides the ingest's rows and shards."""
    h = hashlib.sha256(json.dumps({"format": FORMAT, "dataset": name, "source": source, "classes": classes,
                                   "embedding_model": embedding_model,
                                   "plan": [[r.start, r.stop] for r in plan]}).encode())
    for f in files:
        h.update(json.dumps([f.rel, f.class_id, f.size, f.stamp]).encode())
    return h.hexdigest()


@dataclass
class StagedShard:
    """A finished shard: its catalog reference (None: every file in it was bad) and the files it left out."""

    ref: ShardRef | None
    skipped: list[dict]  # {"file": rel, "reason": why, "where": full path or URL}
    source_bytes: int


class Stage:
    """One ingest's staging folder, locked while it is used (a second identical ingest is refused)."""

    def __init__(self, root: Path, name: str, key: str, committed: Callable[[ShardRef], Path]):
        self.parent = root / name
        self.committed = committed  # a shard's file once a commit took it (a killed commit may have moved it)
        self.folder = self.parent / key[:32]
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.folder / ".lock"))

    def __enter__(self) -> "Stage":
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise IngestError(f"another ingest with the same arguments is running (staging {self.folder}); "
                              "wait for it or stop it") from None
        for tmp in self.folder.glob(f"{TMP_PREFIX}*"):  # a killed run's half-written files: we hold the lock
            tmp.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def staged(self, index: int) -> StagedShard | None:
        """Shard ``index`` as a previous run finished it, or None (not finished, or its files are gone)."""
        try:
            rec = json.loads((self.folder / f"shard-{index:06d}.json").read_text())
        except (OSError, ValueError):
            return None
        ref = ShardRef(**rec["ref"]) if rec["ref"] else None
        if ref is not None and not (self.thumbs_path(ref).is_file() and self.parquet(ref).is_file()):
            return None
        return StagedShard(ref, rec["skipped"], rec["source_bytes"])

    def parquet(self, ref: ShardRef) -> Path:
        """The shard's file: staged, or already moved into the catalog by a commit that did not finish."""
        staged = self.folder / Path(ref.file).name
        return staged if staged.is_file() else self.committed(ref)

    def thumbs_path(self, ref: ShardRef) -> Path:
        return self.folder / f"{ref.sha256}.thumbs.u8"

    def thumbs(self, ref: ShardRef, start: int = 0, stop: int | None = None) -> np.ndarray:
        """A staged shard's standardised thumbnails, rows ``start`` to ``stop`` (read, not mapped: freed once
        used, so they never add up in memory)."""
        stop = ref.rows if stop is None else min(stop, ref.rows)
        with open(self.thumbs_path(ref), "rb") as f:
            f.seek(start * THUMB * THUMB)
            greys = np.fromfile(f, np.uint8, count=max(0, stop - start) * THUMB * THUMB).reshape(-1, THUMB, THUMB)
        return standardise_many(greys)

    def sample_ids(self, ref: ShardRef) -> list[str]:
        return pq.read_table(self.parquet(ref), columns=["sample_id"])["sample_id"].to_pylist()

    def writer(self, index: int) -> "ShardWriter":
        return ShardWriter(self, index)

    def remove(self) -> None:
        """Delete this ingest's folder, and those of earlier ingests of the dataset that no run holds."""
        self._lock.release()
        for folder in [self.folder, *(p for p in self.parent.iterdir() if p.is_dir() and p != self.folder)]:
            lock = FileLock(str(folder / ".lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # another ingest is using it
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                lock.release()
        try:
            self.parent.rmdir()  # the dataset's staging folder, once empty
        except OSError:
            pass


class ShardWriter:
    """Writes one shard's rows as they come (row groups of ``GROUP_ROWS`` or ``GROUP_BYTES``), then seals it."""

    def __init__(self, stage: Stage, index: int):
        self.stage, self.index = stage, index
        self.tmp = temp_path(stage.folder / "shard.parquet")
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._thumbs_tmp = temp_path(stage.folder / "shard.thumbs.u8")
        # Written as they come, grey and not yet standardised: 256 bytes per image instead of the guard's
        # 1 KB (at 64 px, as much as the JPEG), standardised in batches when the guard is stored.
        self._thumbs = None
        self.rows = 0

    def add(self, table: pa.Table, thumbs: np.ndarray, nbytes: int) -> None:
        """Append rows (catalog schema) and their grey thumbnails (n, THUMB, THUMB) uint8."""
        self._pending.append(table)
        self._pending_bytes += nbytes
        if self._thumbs is None:
            self._thumbs = open(self._thumbs_tmp, "wb")
        self._thumbs.write(np.ascontiguousarray(thumbs, np.uint8).data)
        self.rows += table.num_rows
        if sum(t.num_rows for t in self._pending) >= GROUP_ROWS or self._pending_bytes >= GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")
        table = pa.concat_tables(self._pending).combine_chunks()
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self._pending, self._pending_bytes = [], 0

    def finish(self, skipped: list[dict], source_bytes: int) -> StagedShard:
        """Seal the shard (content-addressed name), store its thumbnails, then its record."""
        ref = None
        if self.rows:
            self._flush()
            self._writer.close()
            failpoint("parquet-write", f"ingest shard {self.index}")
            digest = sha256_file(self.tmp)
            ref = ShardRef(file=shard_file(digest), sha256=digest, rows=self.rows, rows_by_status={KEPT: self.rows},
                           role="train")
            self._thumbs.close()
            replace_synced(self._thumbs_tmp, self.stage.thumbs_path(ref))
            replace_synced(self.tmp, self.stage.folder / Path(ref.file).name)
        record = {"ref": ref.model_dump(mode="json") if ref else None, "skipped": skipped, "source_bytes": source_bytes}
        atomic_write(self.stage.folder / f"shard-{self.index:06d}.json", json.dumps(record).encode())
        failpoint("ingest-shard", f"shard {self.index} staged")
        return StagedShard(ref, skipped, source_bytes)

    def abort(self) -> None:
        for f in (self._writer, self._thumbs):
            if f is not None:
                f.close()
        self.tmp.unlink(missing_ok=True)
        self._thumbs_tmp.unlink(missing_ok=True)


def staged_in_order(stage: Stage, shards: list[StagedShard],
                    rows: int = THUMB_PART_ROWS) -> Iterator[tuple[list[str], np.ndarray]]:
    """(sample ids, thumbnails) of the staged shards' rows, in order, ``rows`` at a time (a part never spans shards)."""
    for s in shards:
        if s.ref is not None:
            ids = stage.sample_ids(s.ref)
            for start in range(0, len(ids), rows):
                yield ids[start : start + rows], stage.thumbs(s.ref, start, start + rows)
