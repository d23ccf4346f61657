"""Reading a shared catalog (``s3://bucket/prefix`` or a path): datasets, versions, rows, integrity.

Readers go by HEAD only: a version exists for them once HEAD names it, and
everything a version references was written before its manifest, which was
written before HEAD moved (see ``catalog.publish``). So a read never sees a
partial version, even in the middle of a push.

Nothing read from shared storage is trusted: HEAD seals the head manifest's
sha256, each manifest seals its parent's, so the manifests from the asked
version up to HEAD are checked as a chain, and each shard is hashed as it
arrives (``catalog.dvc_io.copy_verified``) before a row of it is parsed. Copies of restricted
real rows are judged against this shared catalog's own datasets (``catalog.stored_datasets``)::

    from catalog.remote import RemoteCatalog
    remote = RemoteCatalog("s3://team-bucket/catalog", {"endpoint_url": "http://minio:9000"})
    table = remote.open("digits-synth@2").table(["sample_id", "image", "label"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Sequence

import pyarrow as pa

from catalog.dvc_io import read_shown_rows, read_verified_rows
from catalog.access import GUARD_COLUMNS, copies_of_restricted, require_access
from catalog.manifest import Manifest
from catalog.objectstore import ObjectStore
from catalog.safe_paths import check_name
from catalog.store import CatalogError
from catalog.stored_datasets import manifest_chain, stored_datasets
from catalog.verify import VerifyReport, verify_storage
from catalog.version import Status, parse_ref


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
        self.info(name)  # an unknown dataset or a bad name is its own error
        return manifest_chain(self.store, name, start)

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
        # the real sets this shared catalog holds judge the copies, not a local catalog's
        return read_shown_rows(self.remote.store, self.manifest, columns, status, origin, self.allow_restricted,
                               missing=missing_error)

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
            if shard.file in skip or shard.only_kept:
                continue
            one = self.manifest.model_copy(update={"shards": [shard]})
            tables.append(read_verified_rows(self.remote.store, one, ["sample_id", *GUARD_COLUMNS], "all", None,
                                             missing=missing_error))
            where += [shard.file] * tables[-1].num_rows
        if not tables:
            return {}
        t = pa.concat_tables(tables)  # one test over every shard: the real sets are looked up once
        with stored_datasets(self.remote.store, missing_error) as judge:
            copies = copies_of_restricted(judge, t).to_pylist()
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
