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

The root may also be a URL (``Catalog("s3://bucket/prefix")``): the same
layout, reads and commit order, with conditional writes in place of rename
and the file lock (``catalog.object_commit``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Literal

import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock, Timeout

from catalog.atomic import TMP_PREFIX, atomic_write, fsync_dir, temp_path, write_parquet_atomic, writer_is_gone
from catalog.errors import CatalogError, HeadMoved, IntegrityError
from catalog.files import CatalogFiles, catalog_url, check_shard_entry
from catalog import id_index
from catalog.layout import HEAD_MAX_BYTES, SHARDS, head_key, head_line, manifest_key, parse_head, shard_file
from catalog.manifest import Manifest, Role, RunRef, ShardRef, sha256_bytes, sha256_file
from catalog.object_commit import ObjectWrites, default_cache, default_derived
from catalog.objectstore import ObjectStore
from catalog.safe_paths import NAME_RE, check_name, confined, view_base
from catalog.schema import SCHEMA
from catalog.shared_head import CAS_TRIES
from catalog.storage import Storage
from synthgen.failpoints import failpoint
from synthgen.records import KEPT

__all__ = ["NAME_RE", "TMP_PREFIX", "Catalog", "CatalogError", "HeadMoved", "IntegrityError", "atomic_write",
           "temp_path", "write_parquet_atomic"]


_HEAD_TRIES = 20  # re-reads of a HEAD that moves under a reader before it gives up


class Catalog(CatalogFiles):
    """All datasets under one root: a folder, or a URL (``s3://bucket/prefix``).

    Reads go through ``storage`` (``catalog.storage``), the layer the shared
    catalog, DVC reads, verify and audit read through too. In a folder, writes
    are local files (temp + fsync + rename, under the dataset's file lock); at
    a URL, ``objects`` makes them with conditional writes, and shards are read
    from a local cache (``cache``, default ``object_commit.default_cache()``;
    ``storage_options`` such as ``endpoint_url`` go to fsspec), and the files
    derived from its versions (vector and id indexes, guards, grids) are kept
    in a folder of this machine (``derived``, default beside the cache), each
    checked against its version when read and rebuilt where missing.
    """

    def __init__(self, root: str | Path, on_lock_held: Callable[[str, float], None] | None = None,
                 create: bool = True, cache: str | Path | None = None, storage_options: dict | None = None,
                 derived: str | Path | None = None):
        url = catalog_url(root)
        if url is not None and derived is None:
            derived = default_derived(url, Path(cache) if cache is not None else default_cache())
        super().__init__(root, Path(derived) if derived is not None else None)
        self.objects: ObjectWrites | None = None
        if self.url is not None:
            store = ObjectStore(self.url, storage_options)
            store.check()  # a missing bucket or no credentials is one clear error, before anything is read
            self.storage: Storage = store
            self.objects = ObjectWrites(store, Path(cache) if cache is not None else default_cache())
        else:
            if create:  # create=False: only read (a missing folder reads as an empty catalog), e.g. checking a job
                self.root.mkdir(parents=True, exist_ok=True)
            self.storage = Storage.local(self.root)
        # At a URL no lock spans machines: (dataset, thread) -> the head seen when ``lock`` was entered,
        # so a commit under it lands only on that head (``HeadMoved`` otherwise).
        self._held_heads: dict[tuple[str, int], int | None] = {}
        # Called with (dataset, seconds) each time this process releases a dataset's lock it
        # had taken (not re-entries): how long writers were kept waiting (bench/bench_job.py).
        self.on_lock_held = on_lock_held
        # Per instance, never per module: name -> (HEAD bytes, verified manifests by version, the sha256 the
        # next older manifest must have). Manifests are immutable, so a chain checked once against this
        # HEAD stays checked; a HEAD that changes starts over.
        self._chains: dict[str, tuple[bytes | None, dict[int, Manifest], str | None]] = {}
        self._head_flags: dict[str, tuple[bytes | None, bool]] = {}  # name -> (HEAD bytes, head manifest's flag)
        # (path, inode, size, mtime) of shard files whose bytes hashed to their name in this process.
        self._hashed: set[tuple] = set()

    # -- datasets -----------------------------------------------------------
    def manifest_sha256(self, name: str, version: int) -> str:
        """The sha256 of version ``version``'s manifest bytes, as stored (FileNotFoundError when missing)."""
        data = self.storage.manifest_bytes(check_name(name), version)
        if data is None:
            raise FileNotFoundError(self.where(manifest_key(name, version)))
        return sha256_bytes(data)

    def exists(self, name: str) -> bool:
        return self.storage.read(f"{check_name(name)}/dataset.json") is not None

    def names(self) -> list[str]:
        return self.storage.names()

    def info(self, name: str) -> dict:
        """The dataset's own metadata (origin, restricted, description)."""
        check_name(name)
        info = self.storage.info(name)
        if info is None:
            known = ", ".join(self.names()) or "none"
            raise CatalogError(f"no dataset {name!r} in {self.location} (known: {known})")
        if not info.get("restricted") and self._head_says_restricted(name):
            # dataset.json lies outside the hash chain; the sealed head manifest's flag wins.
            info = {**info, "restricted": True}
        return info

    def _head_says_restricted(self, name: str) -> bool:
        """Whether the head manifest (as HEAD names it) records the dataset as restricted.

        Parsed once per HEAD and instance (a head manifest can list thousands of shards).
        """
        raw = self.storage.read_prefix(head_key(name), HEAD_MAX_BYTES + 1)
        known = self._head_flags.get(name)
        if known is not None and known[0] == raw:
            return known[1]
        try:
            head, _ = parse_head(raw)
            data = self.storage.manifest_bytes(name, head) if head else None
            flag = bool(data and json.loads(data).get("restricted"))
        except (IntegrityError, ValueError, AttributeError):
            return True  # unreadable: the reader that opens it reports the corruption; until then, withhold
        self._head_flags[name] = (raw, flag)
        return flag

    def create(
        self, name: str, origin: Literal["real", "synthetic", "mixed"], description: str = "", restricted: bool = False
    ) -> dict:
        """Create an empty dataset; for an existing one, check that it can take these rows.

        Restricted is decided when the dataset is created: adding restricted
        rows to an existing unrestricted dataset is refused (they would be
        readable by everyone), as is another origin.
        """
        check_name(name)
        if self.exists(name):
            info = self.info(name)
            if info["origin"] != origin:
                raise CatalogError(f"dataset {name!r} holds {info['origin']} data; cannot add {origin} rows")
            if restricted and not info.get("restricted"):
                raise CatalogError(f"dataset {name!r} exists and is not restricted: restricted rows cannot be added "
                                   "to it (everyone may read it). Use a new name; restricted is decided at creation")
            return info
        clash = [n for n in self.names() if view_base(n) == view_base(name)]
        if clash:
            raise CatalogError(f"dataset name {name!r} is too close to the existing {clash[0]!r}: both would be "
                               f"queried as {view_base(name)!r} in SQL; choose another name")
        info = {
            "name": name,
            "origin": origin,
            "description": description,
            "restricted": restricted,
            "created_at": datetime.now(timezone.utc).isoformat(),
        }
        data = json.dumps(info, indent=2).encode()
        if self.objects is None:
            atomic_write(self.path(name) / "dataset.json", data)
        elif not self.objects.create_info(name, data):
            return self.create(name, origin, description, restricted)  # created by another writer: check theirs
        return info

    def set_info(self, name: str, info: dict) -> None:
        """Replace an existing dataset's ``dataset.json`` (only ``catalog.release`` changes it after creation)."""
        data = json.dumps(info, indent=2).encode()
        if self.objects is None:
            atomic_write(self.path(name) / "dataset.json", data)
        else:
            self.objects.replace_info(check_name(name), data)

    # -- versions -----------------------------------------------------------
    def head(self, name: str) -> int | None:
        """The current version number, or None for an empty dataset."""
        self.info(name)
        return self.storage.head(name)[0] or None

    def head_sha256(self, name: str) -> str | None:
        """The head manifest's sha256 as recorded in HEAD (seals the end of the chain)."""
        return self.storage.head(name)[1]

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest (the head when ``version`` is None), checked against HEAD.

        HEAD seals the head manifest's sha256 and each manifest its parent's,
        so the manifests from ``version`` up to the head are checked as a
        chain (once per HEAD and instance: manifests never change); a
        manifest whose bytes do not hash to what HEAD or its child recorded,
        or a HEAD rolled back over a published version, is ``IntegrityError``.
        """
        if version is None:
            version = self.head(name)
            if version is None:
                raise CatalogError(f"dataset {name!r} has no versions yet")
        return self.chain(name, version)[0]

    def versions(self, name: str) -> list[Manifest]:
        """Every version's manifest, oldest first, checked as a chain from HEAD."""
        head = self.head(name)
        return self.chain(name, 1) if head else []

    def chain(self, name: str, start: int) -> list[Manifest]:
        """Manifests ``start``..head, each checked against the hash HEAD or its child recorded."""
        self.info(name)
        for _ in range(_HEAD_TRIES):
            raw = self.storage.read_prefix(head_key(name), HEAD_MAX_BYTES + 1)  # None: no HEAD yet
            head, sealed = parse_head(raw, self.storage.where(head_key(name)))
            known = self._chains.get(name)
            if known is not None and known[0] == raw:
                break
            problem = self.storage.beyond_head(name, head, sealed)
            if not problem:
                known = (raw, {}, sealed)
                break
            if self.storage.read_prefix(head_key(name), HEAD_MAX_BYTES + 1) == raw:
                raise IntegrityError(f"{problem}; the catalog is CORRUPT: restore HEAD (run synthgen verify {name})")
            # HEAD moved while we looked: a commit landed between reading HEAD and the manifests past it.
        else:
            raise CatalogError(f"{name}: HEAD kept moving while it was read; retry")
        if not 1 <= start <= head:
            raise CatalogError(f"dataset {name!r} has no version {start} (head is {head or 'none'})")
        _, checked, expected = known
        low = min(checked, default=head + 1)
        for v in range(low - 1, start - 1, -1):
            data = self.storage.manifest_bytes(name, v)
            where = self.storage.where(manifest_key(name, v))
            if data is None:
                raise IntegrityError(f"{where}: manifest missing below HEAD; the catalog is CORRUPT "
                                     f"(run synthgen verify {name})")
            if sha256_bytes(data) != expected:
                who = "HEAD" if v == head else f"version {v + 1}'s parent_sha256"
                raise IntegrityError(f"{where}: sha256 {sha256_bytes(data)[:16]}... does not match {who} "
                                     f"({(expected or 'none')[:16]}...); the catalog is CORRUPT "
                                     f"(run synthgen verify {name})")
            try:
                m = Manifest.model_validate_json(data)
            except ValueError as exc:
                raise IntegrityError(f"{where}: not a valid manifest ({exc.__class__.__name__})") from None
            if m.dataset != name or m.version != v:
                raise IntegrityError(f"{where} describes {m.dataset}@{m.version}; the catalog is CORRUPT")
            checked[v] = m
            expected = m.parent_sha256
        self._chains[name] = (raw, checked, expected)
        return [checked[v] for v in range(start, head + 1)]

    def check_beyond_head(self, name: str, head: int, sealed: str | None) -> None:
        """``IntegrityError`` when manifests past HEAD show that HEAD was moved back (``Storage.beyond_head``)."""
        problem = self.storage.beyond_head(name, head, sealed)
        if problem:
            raise IntegrityError(f"{problem}; the catalog is CORRUPT: restore HEAD (run synthgen verify {name})")

    @contextmanager
    def lock(self, name: str, timeout: float = 600) -> Iterator[None]:
        """Exclusive commit lock for one dataset (safe across processes).

        At a URL nothing locks across machines, so the lock is optimistic: it
        records the head when entered, and a commit under it lands only on
        that head (``HeadMoved`` when another version landed meanwhile).
        What a caller decided under the lock therefore never lands on a head
        it did not see.
        """
        if self.objects is not None:
            with self._optimistic_lock(name):
                yield
            return
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

    @contextmanager
    def _optimistic_lock(self, name: str) -> Iterator[None]:
        key = (check_name(name), threading.get_ident())
        outer = key not in self._held_heads
        if outer:  # re-entered: keep the head the outer lock saw
            self._held_heads[key] = self.objects.head(name)[0] or None
        try:
            yield
        finally:
            if outer:
                del self._held_heads[key]

    def write_shard(self, name: str, table: pa.Table, role: Role = "train", folder: Path | None = None) -> ShardRef:
        """Write rows as an immutable, content-addressed shard (``role``: see ``ShardRef``).

        Safe outside the lock: a shard no manifest lists is never read.
        ``folder``: write it there instead of the dataset's ``shards/`` (a job's
        own folder, so a killed job leaves the catalog untouched); ``commit``'s
        ``adopt_from`` moves it in when the version is published. At a URL
        without ``folder``, the shard is written here, uploaded and removed.
        """
        table = table.cast(SCHEMA) if table.schema != SCHEMA else table
        upload = folder is None and self.objects is not None
        shard_dir = self.objects.cache if upload else folder if folder is not None else self.path(name) / SHARDS
        shard_dir.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(shard_dir / "shard.parquet")
        write_parquet_atomic(table, tmp)
        digest = sha256_file(tmp)
        final = shard_dir / f"{digest}.parquet"
        if upload:
            self.objects.put_shard(name, tmp, digest)
        elif final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            fsync_dir(shard_dir)
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
        restricted: bool | None = None,
    ) -> Manifest:
        """Commit a new version = parent's shards (optionally) + ``new_shards``.

        Takes the dataset's commit lock (re-entrant: callers that decided
        what to commit under ``with catalog.lock(name)`` keep holding it).
        ``expected_parent`` guards against a head that moved since the caller
        read it (compare-and-swap). ``adopt_from``: a folder holding new shards
        written with ``write_shard(folder=...)``; they are moved into
        ``shards/`` once the head is checked, just before the manifest.
        ``restricted``: the flag to seal (default: the dataset's); only ``catalog.release`` lowers it.
        At a URL the same call commits with conditional writes (``_commit_at_url``).
        """
        fields = dict(job=job, job_digest=job_digest, runs=runs or [], embedding_model=embedding_model,
                      message=message, prov=prov or {})
        if self.objects is not None:
            return self._commit_at_url(name, new_shards, expected_parent, keep_parent_shards, fields, adopt_from,
                                       restricted)
        with self.lock(name):
            if adopt_from is not None and (expected_parent == "any" or self.head(name) == expected_parent):
                self.adopt_shards(name, new_shards, adopt_from)
            manifest = self._commit_locked(name, new_shards, expected_parent, keep_parent_shards, fields, restricted)
        # Outside the lock (unless the caller holds it): the version stands once HEAD moved, and
        # audit rebuilds a missing id list, so other writers need not wait for it. (At a URL no id
        # index is written yet: audit and verify accept a version without one.)
        id_index.index_commit(self, manifest)
        return manifest

    def _commit_locked(self, name, new_shards, expected_parent, keep_parent_shards, fields, restricted) -> Manifest:
        head = self.head(name)
        if expected_parent != "any" and head != expected_parent:
            raise HeadMoved(f"{name}: head moved from {expected_parent} to {head} during this commit; retry")
        manifest = self._next_manifest(name, head, self.head_sha256(name) if head else None, new_shards,
                                       keep_parent_shards, fields, restricted)
        data = manifest.to_bytes()
        version = manifest.version
        self.discard_unpublished(name, version)
        self.cleanup_stale(name)
        atomic_write(self.manifest_path(name, version), data, exclusive=True)
        failpoint("manifest-written", f"{name} version {version}")
        # HEAD moves last: until here, readers still see the previous version.
        atomic_write(self.root / head_key(name), head_line(version, sha256_bytes(data)))
        return manifest

    def _commit_at_url(self, name, new_shards, expected_parent, keep_parent_shards, fields, adopt_from,
                       restricted) -> Manifest:
        """``commit`` at a URL: the manifest created only if absent on the head just read, HEAD moved by CAS.

        Under ``lock`` with ``expected_parent="any"``, the parent is the head
        the lock saw. Without one, a commit that loses the race for a version
        number reads the new head and builds on it, so two jobs committing at
        once both land, in commit order, as they do in a folder.
        """
        key = (check_name(name), threading.get_ident())
        if expected_parent == "any" and key in self._held_heads:
            expected_parent = self._held_heads[key]
        self.info(name)
        for _ in range(CAS_TRIES):
            head, sealed = self.objects.head(name)
            head = head or None
            if expected_parent != "any" and head != expected_parent:
                raise HeadMoved(f"{name}: head moved from {expected_parent} to {head} during this commit; retry")
            if adopt_from is not None:
                self.adopt_shards(name, new_shards, adopt_from)
            manifest = self._next_manifest(name, head, sealed, new_shards, keep_parent_shards, fields, restricted)
            if self.objects.publish(name, manifest.version, manifest.to_bytes()):
                if key in self._held_heads:  # a second commit under the same lock builds on this one
                    self._held_heads[key] = manifest.version
                return manifest
        raise CatalogError(f"{name}: {CAS_TRIES} commits in a row lost to other writers at {self.location}; retry")

    def _next_manifest(self, name, head, sealed, new_shards, keep_parent_shards, fields, restricted) -> Manifest:
        """The manifest of the version after ``head`` (sealed by ``sealed``): the parent's shards if kept, plus the new."""
        info = self.info(name)
        parent = self.manifest(name, head) if head else None
        shards = list(parent.shards) if (parent and keep_parent_shards) else []
        shards += new_shards
        counts: dict[str, int] = {}
        for s in shards:
            for k, v in s.rows_by_status.items():
                counts[k] = counts.get(k, 0) + v
        return Manifest(
            dataset=name,
            version=(head or 0) + 1,
            origin=info["origin"],
            parent=head,
            parent_sha256=sealed if head else None,
            restricted=bool(info.get("restricted")) if restricted is None else restricted,
            created_at=datetime.now(timezone.utc).isoformat(),
            shards=shards,
            added_shards=[s.sha256 for s in new_shards],
            rows=sum(s.rows for s in shards),
            rows_by_status=counts,
            **fields,
        )

    def adopt_shards(self, name: str, refs: list[ShardRef], folder: Path) -> None:
        """Move shards written into ``folder`` into the dataset's ``shards/`` (renames; no byte is rewritten).

        Idempotent (a rerun after a kill finds some moved already). A folder on
        another file system is copied (temp name, fsync, rename) and then removed.
        At a URL each is uploaded (unless there) and left in ``folder`` (its owner reads it on, e.g. to store
        the guard, and removes the folder).
        """
        if self.objects is not None:
            for ref in refs:
                check_shard_entry(name, ref.file, ref.sha256)
                src = confined(folder, f"{ref.sha256}.parquet")
                if src.is_file():
                    self.objects.put_shard(name, src, ref.sha256, keep=True)
                elif not self.objects.has_shard(name, ref.sha256):
                    raise CatalogError(f"cannot commit {name}: shard {ref.file} is neither staged nor in the catalog")
            return
        shard_dir = self.path(name) / SHARDS
        shard_dir.mkdir(parents=True, exist_ok=True)
        for ref in refs:
            dst = self.shard_path(name, ref.file, ref.sha256)
            src = confined(folder, dst.name)
            if not src.is_file():
                if not dst.is_file():
                    raise CatalogError(f"cannot commit {name}: shard {ref.file} is neither staged nor in the catalog")
                continue
            if dst.is_file():
                src.unlink()
                os.utime(dst)  # fresh: `synthgen gc` must not take it for a leftover before the manifest lands
                continue
            try:
                os.replace(src, dst)
                os.utime(dst)  # a staged file may be days old (a resumed job): see above
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                tmp = temp_path(dst)
                shutil.copyfile(src, tmp)
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, dst)
                src.unlink()
        fsync_dir(shard_dir)

    def discard_unpublished(self, name: str, version: int, keep: bytes | None = None) -> bool:
        """Remove a manifest for ``version`` left by a commit or pull killed before HEAD moved.

        Called under the commit lock with HEAD at ``version - 1``. Only a
        manifest proven unpublished is moved out of the way, to
        ``versions/unpublished/`` (``beyond_head``: the only one past HEAD,
        extending it, no derived files); anything else means HEAD was moved
        back, and is ``IntegrityError``. No manifest is ever deleted. A leftover
        with exactly the bytes ``keep`` stays (a pull resuming). Returns
        whether a manifest for ``version`` remains.
        """
        orphan = self.manifest_path(name, version)
        data = self.storage.manifest_bytes(name, version)
        if data is None:
            return False
        if keep is not None and data == keep:
            return True
        head, sealed = self.storage.head(name)
        if head != version - 1:
            raise IntegrityError(f"{orphan}: HEAD names version {head}, not {version - 1}; nothing removed")
        self.check_beyond_head(name, head, sealed)
        # Moved aside, not deleted: should the proof be wrong (its derived files removed too), the bytes remain.
        aside = orphan.parent / "unpublished" / f"{orphan.stem}.{sha256_bytes(data)[:16]}.json"
        aside.parent.mkdir(exist_ok=True)
        os.replace(orphan, aside)
        fsync_dir(orphan.parent)
        return False

    def verified_shard(self, name: str, ref: ShardRef) -> Path:
        """``verified_file`` for a manifest's shard entry."""
        return self.verified_file(name, ref.file, ref.sha256)

    def verified_file(self, name: str, file: str, sha256: str) -> Path:
        """The local path of a manifest's shard, once its bytes hash to the manifest's sha256.

        The path must be ``shards/<sha256>.parquet`` inside the dataset
        (``CatalogFiles.shard_path``); the bytes are hashed on first use in
        this process (and again if the file is replaced), so a substituted
        shard (a valid Parquet file with other rows) is refused, not read. At a URL the path is the shard's copy in
        the local cache, fetched (and hashed as it arrives) on first use.
        """
        if self.objects is not None:
            check_shard_entry(check_name(name), file, sha256)
            path = self.objects.fetch(name, sha256)
        else:
            path = self.shard_path(name, file, sha256)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise IntegrityError(f"{path}: shard listed in {name}'s manifest is missing; the catalog is CORRUPT "
                                 f"(run synthgen verify {name})") from None
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._hashed:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != sha256:
                raise IntegrityError(f"{path}: content sha256 {h.hexdigest()[:16]}... does not match the manifest's "
                                     f"{sha256[:16]}...; the shard was replaced or damaged and is not read "
                                     f"(run synthgen verify {name})")
            self._hashed.add(key)
        return path

    def ensure_index(self, name: str) -> bool:
        """Write ids.json for every version that has none (old catalogs, crashes); never replace one.

        An id list that exists but does not check out is evidence (verify
        reports it), so it is left as it is and readers scan instead; shards
        are hashed against their manifest before they are indexed. Takes
        the dataset lock without waiting; False when it is busy, the folder
        cannot be written, or a shard does not verify (the caller then scans).
        At a URL the id index is not kept (readers scan): always False.
        """
        if self.objects is not None:
            return False
        try:
            with self.lock(name, timeout=0):
                for m in self.versions(name):
                    if not self.ids_json_exists(name, m.version):
                        for ref in m.shards:
                            self.verified_shard(name, ref)
                        id_index.index_version(self, m)
            return True
        except (Timeout, OSError, ValueError, CatalogError, pa.ArrowException):
            return False

    def ids_json_exists(self, name: str, version: int) -> bool:
        """Whether version ``version`` has an id list file, readable or not."""
        return id_index.ids_json_path(self, name, version).exists()

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
        once the next commit of that dataset runs. At a URL no temp file is ever written: 0.
        """
        if self.objects is not None:
            return 0
        n = 0
        for tmp in self.path(name).rglob(f"{TMP_PREFIX}*"):
            if writer_is_gone(tmp, max_age_s):
                tmp.unlink(missing_ok=True)
                n += 1
        return n

    def cleanup_temp(self) -> int:
        """Remove every temporary file under the catalog (run it when no writer is active); 0 at a URL."""
        if self.objects is not None:
            return 0
        n = 0
        for tmp in self.root.rglob(f"{TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n
