"""Reading a shared catalog (``s3://bucket/prefix`` or a path): datasets, versions, rows, integrity.

Readers go by HEAD only: a version exists for them once HEAD names it, and
everything a version references was written before its manifest, which was
written before HEAD moved (see ``catalog.publish``). So a read never sees a
partial version, even in the middle of a push.

Nothing read from shared storage is trusted: HEAD seals the head manifest's
sha256, each manifest seals its parent's, so the manifests from the asked
version up to HEAD are checked as a chain, and each shard is hashed as it
arrives (``catalog.dvc_io.copy_verified``) before a row of it is parsed::

    from catalog.remote import RemoteCatalog
    remote = RemoteCatalog("s3://team-bucket/catalog", {"endpoint_url": "http://minio:9000"})
    table = remote.open("digits-synth@2").table(["sample_id", "image", "label"])
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from catalog.dvc_io import IntegrityError, copy_verified, read_verified_rows
from catalog.access import GUARD_COLUMNS, copies_of_restricted, require_access
from catalog.layout import manifest_key, shard_file
from catalog.manifest import Manifest, ShardRef, sha256_bytes
from catalog.objectstore import ObjectStore
from catalog.safe_paths import check_name
from catalog.schema import SCHEMA
from catalog.store import CatalogError
from catalog.verify import VerifyReport, verify_storage
from catalog.version import Status, parse_ref
from synthgen.records import KEPT


def missing_error(fs: Any, path: str, what: str, exc: FileNotFoundError) -> CatalogError:
    """The error for an object a manifest or segment list names that is not in the shared catalog."""
    return CatalogError(f"{what}: {fs.path}/{path} is missing from the shared catalog")


def open_store(target: "str | ObjectStore | RemoteCatalog", storage_options: dict | None = None,
               create: bool = False) -> ObjectStore:
    """An ``ObjectStore`` for a URL (checked reachable), or the one already given."""
    if isinstance(target, RemoteCatalog):
        return target.store
    if isinstance(target, ObjectStore):
        return target
    store = ObjectStore(target, storage_options)
    store.check(create=create)
    return store


class RemoteCatalog:
    """All datasets under one shared URL, read through HEAD."""

    def __init__(self, target: "str | ObjectStore", storage_options: dict[str, Any] | None = None):
        self.store = open_store(target, storage_options)

    @property
    def url(self) -> str:
        return self.store.url

    def names(self) -> list[str]:
        """Datasets that have a ``dataset.json``."""
        return self.store.names()

    def info(self, name: str) -> dict:
        """The dataset's own metadata (origin, restricted, description)."""
        check_name(name)
        info = self.store.info(name)
        if info is None:
            known = ", ".join(self.names()) or "none"
            raise CatalogError(f"no dataset {name!r} in {self.url} (known: {known})")
        return info

    def head(self, name: str) -> tuple[int, str | None]:
        """(head version, its manifest's sha256) as HEAD says; (0, None) before the first push."""
        self.info(name)
        return self.store.head(name)

    def chain(self, name: str, start: int = 1) -> list[tuple[bytes, Manifest]]:
        """Manifests ``start``..head (bytes and parsed), checked link by link back from HEAD's seal.

        Raises ``IntegrityError`` naming the manifest whose bytes do not hash
        to what its child (or HEAD) recorded.
        """
        head, sealed = self.head(name)
        if head == 0:
            raise CatalogError(f"dataset {name!r} in {self.url} has no versions yet")
        if not 1 <= start <= head:
            raise CatalogError(f"dataset {name!r} in {self.url} has no version {start} (head is {head})")
        out: list[tuple[bytes, Manifest]] = []
        for v in range(head, start - 1, -1):
            key = manifest_key(name, v)
            data = self.store.read(key)
            if data is None:
                raise IntegrityError(f"{self.store.where(key)}: manifest missing below HEAD")
            if sealed is not None and sha256_bytes(data) != sealed:
                raise IntegrityError(f"{self.store.where(key)}: sha256 {sha256_bytes(data)} does not match the "
                                     f"hash recorded by {'HEAD' if v == head else f'version {v + 1}'} ({sealed})")
            m = Manifest.model_validate_json(data)
            if m.dataset != name or m.version != v:
                raise IntegrityError(f"{self.store.where(key)} describes {m.dataset}@{m.version}")
            out.append((data, m))
            sealed = m.parent_sha256
        return out[::-1]

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest (default the head), checked against HEAD through the chain."""
        return self.chain(name, version or self.head(name)[0] or 1)[0][1]

    def versions(self, name: str) -> list[Manifest]:
        """Every published version, oldest first."""
        return [m for _, m in self.chain(name)]

    def open(self, ref: str, allow_restricted: bool = False) -> "RemoteVersion":
        """'name' (head) or 'name@N', for reading (``allow_restricted`` to read a restricted one's rows)."""
        name, version = parse_ref(ref)
        return RemoteVersion(self, self.manifest(name, version), allow_restricted)


class SharedDatasets:
    """A shared catalog's datasets as ``catalog.access`` reads a ``Catalog``'s: the judge of which rows copy
    restricted data (names, info, head version, manifest, and shards as local files: each fetched once,
    hash-checked, into ``folder``, e.g. to check that an open real set holds the rows a copy was matched to)."""

    def __init__(self, remote: RemoteCatalog, folder: Path):
        self.remote = remote
        self.folder = folder

    def names(self) -> list[str]:
        """The shared catalog's datasets."""
        return self.remote.names()

    def info(self, name: str) -> dict:
        """A shared dataset's ``dataset.json``."""
        return self.remote.info(name)

    def head(self, name: str) -> int | None:
        """The head version, None before the first push (as ``Catalog.head``)."""
        return self.remote.head(name)[0] or None

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest (default the head), chain-checked against HEAD."""
        return self.remote.manifest(name, version)

    def verified_shard(self, name: str, ref: ShardRef) -> Path:
        """A local copy of the shard, its bytes checked against the manifest's sha256 as they arrive."""
        if ref.file != shard_file(ref.sha256):  # never a key outside the dataset's shards/
            raise IntegrityError(f"{name}: manifest lists shard {ref.file!r}, not {shard_file(ref.sha256)}")
        dest = self.folder / check_name(name) / ref.file
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".part")
            with open(tmp, "wb") as f:
                copy_verified(self.remote.store.files, f"{name}/{ref.file}", ref.sha256, f, missing=missing_error)
            os.replace(tmp, dest)
        return dest


@contextmanager
def shared_datasets(remote: RemoteCatalog) -> Iterator[SharedDatasets]:
    """``SharedDatasets`` over ``remote``, its fetched shards removed on exit."""
    with tempfile.TemporaryDirectory(prefix="synthgen-shared-") as folder:
        yield SharedDatasets(remote, Path(folder))


@dataclass
class RemoteVersion:
    """One published version on shared storage; rows are fetched and hash-checked on ``table()``.

    As for ``DatasetVersion``, a restricted dataset's rows, and a synthetic
    version's excluded rows that copy a restricted real dataset's images,
    are handed out only with ``allow_restricted=True``. Whether a real
    dataset is open is judged against this shared catalog, where the version
    was published, not against any local one: a real set that was never
    published there counts as restricted (``copies_of_restricted``).
    """

    remote: RemoteCatalog
    manifest: Manifest
    allow_restricted: bool = False

    @property
    def ref(self) -> str:
        return f"{self.manifest.dataset}@{self.manifest.version}"

    def table(self, columns: Sequence[str] | None = None, status: Status = "kept",
              origin: str | None = None) -> pa.Table:
        """Rows as one Arrow table, filtered exactly as ``DatasetVersion.table`` filters them.

        Without ``allow_restricted``, excluded rows that copy a restricted
        (or unpublished) real dataset are left out.
        """
        info = self.remote.info(self.manifest.dataset)  # the manifest's flag is sealed by HEAD; dataset.json's is not
        require_access({**info, "restricted": bool(info.get("restricted") or self.manifest.restricted)},
                       self.allow_restricted)
        if status == KEPT or self.allow_restricted:  # a kept row passed the memorisation guard
            return read_verified_rows(self.remote.store, self.manifest, columns, status, origin, missing=missing_error)
        cols = None if columns is None else sorted(set(columns) | set(GUARD_COLUMNS), key=SCHEMA.names.index)
        t = read_verified_rows(self.remote.store, self.manifest, cols, status, origin, missing=missing_error)
        with shared_datasets(self.remote) as cat:  # the real sets this shared catalog holds, not a local one's
            t = t.filter(pc.invert(copies_of_restricted(cat, t)))
        return t.select(list(columns)) if columns else t

    def withheld_shards(self, skip: Collection[str] = ()) -> dict[str, list[str]]:
        """Shard file -> ids of its rows that copy a restricted (or unpublished) real dataset; empty when allowed.

        ``DatasetVersion.withheld_shards`` for a published version: only
        shards with non-kept rows are fetched (hash-checked, sample id,
        status and guard evidence columns), and none whose file is in ``skip``
        (e.g. already on the local machine).
        """
        if self.allow_restricted:
            return {}
        tables, where = [], []
        for shard in self.manifest.shards:
            if shard.file in skip or (shard.rows_by_status and set(shard.rows_by_status) <= {KEPT}):
                continue
            one = self.manifest.model_copy(update={"shards": [shard]})
            tables.append(read_verified_rows(self.remote.store, one, ["sample_id", *GUARD_COLUMNS], "all", None,
                                             missing=missing_error))
            where += [shard.file] * tables[-1].num_rows
        if not tables:
            return {}
        t = pa.concat_tables(tables)  # one test over every shard: the real sets are looked up once
        with shared_datasets(self.remote) as cat:
            copies = copies_of_restricted(cat, t).to_pylist()
        out: dict[str, list[str]] = {}
        for file, sid, copy in zip(where, t["sample_id"].to_pylist(), copies):
            if copy:
                out.setdefault(file, []).append(sid)
        return out


def verify_remote(target: "str | RemoteCatalog", name: str, version: int | None = None,
                  storage_options: dict | None = None) -> VerifyReport:
    """``catalog.verify.verify`` for a shared catalog: the same checks (``verify_storage``) over its store.

    The manifest chain to HEAD, and the shards (hash, name, row count,
    schema) and id-index segments of versions up to ``version`` (default
    head); every problem is reported. Every byte of those files is read.
    """
    remote = target if isinstance(target, RemoteCatalog) else RemoteCatalog(target, storage_options)
    remote.head(name)  # an unknown dataset or a bad name is an error, not a report
    return verify_storage(remote.store, name, version)
