"""The catalog on disk: datasets, immutable shards, versions and the head pointer.

Layout under the catalog root (the parts a shared catalog and a DVC
revision share are spelled once, in ``catalog.layout``)::

    <name>/dataset.json            origin (real|synthetic), restricted, created_at
    <name>/HEAD                    the current version number and its manifest's sha256
    <name>/shards/<sha256>.parquet immutable, content-addressed row files
    <name>/versions/000003.json    manifest of version 3 (never rewritten)
    <name>/versions/000003/        derived files (sample grid, card)
    <name>/.lock                   commit lock (filelock)

Every file is written to a temporary name in the same folder, fsynced and
renamed into place, and HEAD moves last, so a crash at any point leaves the
catalog readable at its previous version. Temporary names start with '.tmp-'
and are never read; ``cleanup_temp`` removes leftovers.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import re
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock

from catalog.atomic import TMP_PREFIX, _fsync_dir, _writer_is_gone, atomic_write, temp_path, write_parquet_atomic
from catalog.id_index import index_commit
from catalog.layout import SHARDS, head_key, head_line, manifest_key, shard_file, version_dir_key
from catalog.manifest import Manifest, Role, RunRef, ShardRef, sha256_bytes, sha256_file
from catalog.schema import SCHEMA
from catalog.storage import Storage
from synthgen.failpoints import failpoint
from synthgen.records import KEPT

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class CatalogError(RuntimeError):
    """A catalog operation that cannot proceed (unknown dataset, conflict...)."""


class HeadMoved(CatalogError):
    """A commit's expected parent is no longer the head: another version landed first."""


class Catalog:
    """All datasets under one root folder.

    Reads go through ``storage`` (``catalog.storage``), the layer the shared
    catalog, DVC reads, verify and audit read through too; writes stay local
    files (temp + fsync + rename, under the dataset's file lock).
    """

    def __init__(self, root: str | Path, on_lock_held: Callable[[str, float], None] | None = None,
                 create: bool = True):
        self.root = Path(root)
        if create:  # create=False: only read (a missing folder reads as an empty catalog), e.g. checking a job
            self.root.mkdir(parents=True, exist_ok=True)
        self.storage = Storage.local(self.root)
        # Called with (dataset, seconds) each time this process releases a dataset's lock it
        # had taken (not re-entries): how long writers were kept waiting (bench/bench_job.py).
        self.on_lock_held = on_lock_held

    # -- datasets -----------------------------------------------------------
    def path(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise CatalogError(f"invalid dataset name {name!r} (use lowercase letters, digits, '.', '_', '-')")
        return self.root / name

    def exists(self, name: str) -> bool:
        return self.storage.read(f"{self.path(name).name}/dataset.json") is not None

    def names(self) -> list[str]:
        return self.storage.names()

    def info(self, name: str) -> dict:
        """The dataset's own metadata (origin, restricted, description)."""
        self.path(name)  # checks the name
        info = self.storage.info(name)
        if info is None:
            known = ", ".join(self.names()) or "none"
            raise CatalogError(f"no dataset {name!r} in {self.root} (known: {known})")
        return info

    def create(
        self, name: str, origin: Literal["real", "synthetic", "mixed"], description: str = "", restricted: bool = False
    ) -> dict:
        """Create an empty dataset (idempotent when origin matches)."""
        if self.exists(name):
            info = self.info(name)
            if info["origin"] != origin:
                raise CatalogError(f"dataset {name!r} holds {info['origin']} data; cannot add {origin} rows")
            return info
        info = {
            "name": name,
            "origin": origin,
            "description": description,
            "restricted": restricted,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        atomic_write(self.path(name) / "dataset.json", json.dumps(info, indent=2).encode())
        return info

    # -- versions -----------------------------------------------------------
    def head(self, name: str) -> int | None:
        """The current version number, or None for an empty dataset."""
        self.info(name)
        return self.storage.head(name)[0] or None

    def head_sha256(self, name: str) -> str | None:
        """The head manifest's sha256 as recorded in HEAD (seals the end of the chain)."""
        return self.storage.head(name)[1]

    def manifest_path(self, name: str, version: int) -> Path:
        return self.root / manifest_key(name, version)

    def version_dir(self, name: str, version: int) -> Path:
        """Folder for files derived from a version (grid, card)."""
        return self.root / version_dir_key(name, version)

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest; the head when ``version`` is None."""
        if version is None:
            version = self.head(name)
            if version is None:
                raise CatalogError(f"dataset {name!r} has no versions yet")
        data = self.storage.manifest_bytes(name, version)
        if data is None:
            raise CatalogError(f"dataset {name!r} has no version {version} (head is {self.head(name)})")
        return Manifest.model_validate_json(data)

    def versions(self, name: str) -> list[Manifest]:
        head = self.head(name)
        return [self.manifest(name, v) for v in range(1, (head or 0) + 1)]

    @contextmanager
    def lock(self, name: str, timeout: float = 600) -> Iterator[None]:
        """Exclusive commit lock for one dataset (safe across processes)."""
        self.path(name).mkdir(parents=True, exist_ok=True)
        # One lock object per file and process (is_singleton), so holding it
        # while calling commit(), which takes it too, re-enters instead of
        # deadlocking; other threads and processes still wait.
        lock = FileLock(str(self.path(name) / ".lock"), is_singleton=True)
        outer = not lock.is_locked
        with lock.acquire(timeout=timeout):
            t0 = time.perf_counter()
            try:
                yield
            finally:
                if outer and self.on_lock_held is not None:
                    self.on_lock_held(name, time.perf_counter() - t0)

    def write_shard(self, name: str, table: pa.Table, role: Role = "train", folder: Path | None = None) -> ShardRef:
        """Write rows as an immutable, content-addressed shard (``role``: see ``ShardRef``).

        Safe outside the lock: a shard no manifest lists is never read.
        ``folder``: write it there instead of the dataset's ``shards/`` (a job's
        own folder, so a killed job leaves the catalog untouched); ``commit``'s
        ``adopt_from`` moves it in when the version is published.
        """
        table = table.cast(SCHEMA) if table.schema != SCHEMA else table
        shard_dir = folder if folder is not None else self.path(name) / SHARDS
        shard_dir.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(shard_dir / "shard.parquet")
        write_parquet_atomic(table, tmp)
        digest = sha256_file(tmp)
        final = shard_dir / f"{digest}.parquet"
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            _fsync_dir(shard_dir)
        counts: dict[str, int] = {}
        for status in table.column("status").to_pylist():
            counts[status] = counts.get(status, 0) + 1
        return ShardRef(file=shard_file(digest), sha256=digest, rows=table.num_rows, rows_by_status=counts, role=role)

    def write_split(self, name: str, table: pa.Table, folder: Path | None = None) -> list[ShardRef]:
        """Write ``table``'s kept rows as a training shard and the others as an excluded one.

        Returns the refs (training first; a side with no rows writes no file).
        Row order is kept within each side.
        """
        kept = pc.equal(table["status"], KEPT)
        refs = []
        for rows, role in ((table.filter(kept), "train"), (table.filter(pc.invert(kept)), "excluded")):
            if rows.num_rows:
                refs.append(self.write_shard(name, rows, role, folder))
        return refs

    def commit(
        self,
        name: str,
        new_shards: list[ShardRef],
        *,
        expected_parent: int | None | str = "any",
        keep_parent_shards: bool = True,
        job: dict | None = None,
        job_digest: str | None = None,
        runs: list[RunRef] | None = None,
        embedding_model: str | None = None,
        message: str = "",
        prov: dict | None = None,
        adopt_from: Path | None = None,
    ) -> Manifest:
        """Commit a new version = parent's shards (optionally) + ``new_shards``.

        Takes the dataset's commit lock (re-entrant: callers that decided
        what to commit under ``with catalog.lock(name)`` keep holding it).
        ``expected_parent`` guards against a head that moved since the caller
        read it (compare-and-swap). ``adopt_from``: a folder holding new shards
        written with ``write_shard(folder=...)``; they are moved into
        ``shards/`` once the head is checked, just before the manifest.
        """
        with self.lock(name):
            if adopt_from is not None and (expected_parent == "any" or self.head(name) == expected_parent):
                self.adopt_shards(name, new_shards, adopt_from)
            manifest = self._commit_locked(name, new_shards, expected_parent, keep_parent_shards, job, job_digest,
                                           runs, embedding_model, message, prov)
        # Outside the lock (unless the caller holds it): the version stands once HEAD moved, and
        # audit rebuilds a missing id list, so other writers need not wait for it.
        index_commit(self, manifest)
        return manifest

    def _commit_locked(self, name, new_shards, expected_parent, keep_parent_shards, job, job_digest, runs,
                       embedding_model, message, prov) -> Manifest:
        info = self.info(name)
        head = self.head(name)
        if expected_parent != "any" and head != expected_parent:
            raise HeadMoved(f"{name}: head moved from {expected_parent} to {head} during this commit; retry")
        parent = self.manifest(name, head) if head else None
        shards = list(parent.shards) if (parent and keep_parent_shards) else []
        shards += new_shards
        counts: dict[str, int] = {}
        for s in shards:
            for k, v in s.rows_by_status.items():
                counts[k] = counts.get(k, 0) + v
        version = (head or 0) + 1
        manifest = Manifest(
            dataset=name,
            version=version,
            origin=info["origin"],
            parent=head,
            parent_sha256=sha256_file(self.manifest_path(name, head)) if head else None,
            created_at=datetime.now(timezone.utc).isoformat(),
            shards=shards,
            added_shards=[s.sha256 for s in new_shards],
            rows=sum(s.rows for s in shards),
            rows_by_status=counts,
            job_digest=job_digest,
            job=job,
            runs=runs or [],
            embedding_model=embedding_model,
            message=message,
            prov=prov or {},
        )
        data = manifest.to_bytes()
        self._drop_unpublished(name, version)
        self.cleanup_stale(name)
        atomic_write(self.manifest_path(name, version), data, exclusive=True)
        failpoint("manifest-written", f"{name} version {version}")
        # HEAD moves last: until here, readers still see the previous version.
        atomic_write(self.root / head_key(name), head_line(version, sha256_bytes(data)))
        return manifest

    def adopt_shards(self, name: str, refs: list[ShardRef], folder: Path) -> None:
        """Move shards written into ``folder`` into the dataset's ``shards/`` (renames; no byte is rewritten).

        Idempotent (a rerun after a kill finds some moved already). A folder on
        another file system is copied (temp name, fsync, rename) and then removed.
        """
        shard_dir = self.path(name) / SHARDS
        shard_dir.mkdir(parents=True, exist_ok=True)
        for ref in refs:
            src, dst = folder / Path(ref.file).name, self.path(name) / ref.file
            if not src.is_file():
                if not dst.is_file():
                    raise CatalogError(f"cannot commit {name}: shard {ref.file} is neither staged nor in the catalog")
                continue
            if dst.is_file():
                src.unlink()
                continue
            try:
                os.replace(src, dst)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                tmp = temp_path(dst)
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, dst)
                src.unlink()
        _fsync_dir(shard_dir)

    def _drop_unpublished(self, name: str, version: int) -> None:
        """Remove a manifest for ``version`` left by a commit killed before HEAD moved.

        Called under the commit lock with HEAD at ``version - 1``: such a
        manifest was never published (readers go by HEAD), and its commit
        is being redone now, so it is garbage, not history.
        """
        orphan = self.manifest_path(name, version)
        if orphan.exists():
            orphan.unlink()
            _fsync_dir(orphan.parent)

    def manifest_sha256(self, name: str, version: int) -> str:
        data = self.storage.manifest_bytes(name, version)
        if data is None:
            raise FileNotFoundError(self.manifest_path(name, version))
        return sha256_bytes(data)

    def find_job(self, name: str, job_digest: str) -> Manifest | None:
        """The version that already committed this exact job spec, if any."""
        if not self.exists(name):
            return None
        for m in reversed(self.versions(name)):
            if m.job_digest == job_digest:
                return m
        return None

    def cleanup_stale(self, name: str, max_age_s: float = 86_400) -> int:
        """Remove one dataset's temp files whose writer is dead; returns how many.

        Safe while other processes write (a live writer's files are kept);
        commits call it, so a job killed mid-write leaves nothing behind
        once the next commit of that dataset runs.
        """
        n = 0
        for tmp in self.path(name).rglob(f"{TMP_PREFIX}*"):
            if _writer_is_gone(tmp, max_age_s):
                tmp.unlink(missing_ok=True)
                n += 1
        return n

    def cleanup_temp(self) -> int:
        """Remove every temporary file under the catalog (run it when no writer is active)."""
        n = 0
        for tmp in self.root.rglob(f"{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n
