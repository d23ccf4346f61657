"""Any catalog root's own datasets (a shared catalog, a DVC revision) as ``catalog.access`` reads a ``Catalog``'s.

Whether a synthetic row that copies a real image may be shown is judged
against the catalog the row was read from: the real set as *that* catalog
holds it. A read from shared storage or from a git revision therefore judges
against the datasets of the same ``catalog.storage.Storage``, never against a
local catalog; a real set that is absent there counts as restricted::

    with stored_datasets(storage) as judge:
        table = table.filter(pc.invert(copies_of_restricted(judge, table)))

Nothing read is trusted: manifests are checked as a chain back from HEAD's
seal (``manifest_chain``) and shards are hash-checked as they arrive.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from catalog.errors import CatalogError, IntegrityError
from catalog.layout import manifest_key, shard_file
from catalog.manifest import Manifest, ShardRef, sha256_bytes
from catalog.safe_paths import check_name
from catalog.storage import Storage

# ``missing(fs, path, what, exc)``: the error for a listed file the storage does not have.
Missing = Callable[[Any, str, str, FileNotFoundError], Exception]


def not_found(fs: Any, path: str, what: str, exc: FileNotFoundError) -> CatalogError:
    """The default ``Missing``: name the file and what listed it."""
    return CatalogError(f"{what}: {path} is missing")


def manifest_chain(storage: Storage, name: str, start: int = 1) -> list[tuple[bytes, Manifest]]:
    """Manifests ``start``..head of ``name`` in ``storage`` (bytes and parsed), checked link by link back from HEAD.

    Raises ``IntegrityError`` naming the manifest whose bytes do not hash
    to what its child (or HEAD) recorded.
    """
    head, sealed = storage.head(name)
    if head == 0:
        raise CatalogError(f"dataset {name!r} in {storage.url} has no versions yet")
    if not 1 <= start <= head:
        raise CatalogError(f"dataset {name!r} in {storage.url} has no version {start} (head is {head})")
    out: list[tuple[bytes, Manifest]] = []
    for v in range(head, start - 1, -1):
        key = manifest_key(name, v)
        data = storage.read(key)
        if data is None:
            raise IntegrityError(f"{storage.where(key)}: manifest missing below HEAD")
        if sealed is not None and sha256_bytes(data) != sealed:
            raise IntegrityError(f"{storage.where(key)}: sha256 {sha256_bytes(data)} does not match the "
                                 f"hash recorded by {'HEAD' if v == head else f'version {v + 1}'} ({sealed})")
        m = Manifest.model_validate_json(data)
        if m.dataset != name or m.version != v:
            raise IntegrityError(f"{storage.where(key)} describes {m.dataset}@{m.version}")
        out.append((data, m))
        sealed = m.parent_sha256
    return out[::-1]


class StoredDatasets:
    """A ``Storage``'s datasets as ``catalog.access`` reads a ``Catalog``'s: the judge of which rows copy
    restricted data (names, info, head version, manifest, and shards as local files: each fetched once,
    hash-checked, into ``folder``, e.g. to check that an open real set holds the rows a copy was matched to)."""

    def __init__(self, storage: Storage, folder: Path, missing: Missing = not_found):
        self.storage = storage
        self.folder = folder
        self.missing = missing

    def names(self) -> list[str]:
        """The datasets that have a ``dataset.json`` there."""
        return self.storage.names()

    def info(self, name: str) -> dict:
        """A dataset's ``dataset.json``; ``CatalogError`` when it has none."""
        info = self.storage.info(check_name(name))
        if info is None:
            raise CatalogError(f"no dataset {name!r} in {self.storage.url}")
        return info

    def head(self, name: str) -> int | None:
        """The head version, None before the first commit (as ``Catalog.head``)."""
        return self.storage.head(check_name(name))[0] or None

    def manifest(self, name: str, version: int | None = None) -> Manifest:
        """A version's manifest (default the head), chain-checked against HEAD."""
        check_name(name)
        return manifest_chain(self.storage, name, version or self.storage.head(name)[0] or 1)[0][1]

    def verified_shard(self, name: str, ref: ShardRef) -> Path:
        """A local copy of the shard, its bytes checked against the manifest's sha256 as they arrive."""
        if ref.file != shard_file(ref.sha256):  # never a key outside the dataset's shards/
            raise IntegrityError(f"{name}: manifest lists shard {ref.file!r}, not {shard_file(ref.sha256)}")
        dest = self.folder / check_name(name) / ref.file
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".part")
            key = f"{name}/{ref.file}"
            try:
                with open(tmp, "wb") as f:
                    got = self.storage.sha256(key, f)
            except FileNotFoundError as exc:
                tmp.unlink(missing_ok=True)
                raise self.missing(self.storage.files, key, "shard listed in the manifest", exc) from None
            if got != ref.sha256:
                tmp.unlink(missing_ok=True)
                raise IntegrityError(f"shard {key}: sha256 is {got}, manifest says {ref.sha256}")
            os.replace(tmp, dest)
        return dest


@contextmanager
def stored_datasets(storage: Storage, missing: Missing = not_found) -> Iterator[StoredDatasets]:
    """``StoredDatasets`` over ``storage``, its fetched shards removed on exit."""
    with tempfile.TemporaryDirectory(prefix="synthgen-judge-") as folder:
        yield StoredDatasets(storage, Path(folder), missing)
