"""Where a local catalog's files live: the part of ``Catalog`` that the id index needs too.

``catalog.store.Catalog`` builds on this class and ``catalog.id_index`` takes
it as its argument, so neither module imports the other's internals (the
store calls the index after each commit; the index only needs paths).
Every path is built from a checked name (``catalog.safe_paths``).
"""

from __future__ import annotations

import re
from pathlib import Path

import fsspec

from catalog.errors import CatalogError, IntegrityError
from catalog.layout import SHARDS, manifest_key, version_dir_key
from catalog.manifest import sha256_bytes
from catalog.safe_paths import check_name, confined

_SHARD_FILE = re.compile(r"shards/([0-9a-f]{64})\.parquet")


def catalog_url(root: str | Path) -> str | None:
    """The URL of a catalog root on another filesystem (``s3://bucket/prefix``); None for a folder here.

    A ``file://`` URL is a folder here too: it is read and written as one.
    """
    if isinstance(root, Path) or fsspec.utils.get_protocol(str(root)) in ("file", "local"):
        return None
    return str(root).rstrip("/")


def local_root(root: str | Path) -> Path:
    """A folder root as a ``Path`` (``file://`` URLs unwrapped)."""
    return Path(fsspec.utils.infer_storage_options(str(root))["path"]) if str(root).startswith("file:") else Path(root)


def check_shard_entry(name: str, file: str, sha256: str) -> None:
    """``IntegrityError`` unless a manifest's shard entry is exactly ``shards/<sha256>.parquet`` for its sha256."""
    match = _SHARD_FILE.fullmatch(file) if isinstance(file, str) else None
    if match is None or match.group(1) != sha256:
        raise IntegrityError(f"{name}: manifest lists shard {file!r}, not a file named by its sha256 "
                             f"inside {SHARDS}/; the catalog is CORRUPT (run synthgen verify {name})")


class CatalogFiles:
    """Paths under one catalog root on this machine, or the URL of one elsewhere (then no local path exists)."""

    def __init__(self, root: str | Path, derived: Path | None = None):
        self.url = catalog_url(root)
        self._root = None if self.url else local_root(root)
        # Files derived from versions (indexes, guards, grids, cards) live beside the datasets in a folder;
        # a catalog at a URL keeps them in a folder of this machine (``derived``), rebuilt where missing.
        self._derived = None if self.url is None else Path(derived) if derived is not None else None

    @property
    def root(self) -> Path:
        """The catalog folder; ``CatalogError`` for a catalog at a URL, which has no folder on this machine."""
        if self._root is None:
            raise CatalogError(f"{self.url}: this needs the catalog's files in a folder on this machine, and this "
                               "catalog is at a URL; pull the dataset into a local catalog first (synthgen pull)")
        return self._root

    @property
    def location(self) -> str:
        """The root as given: a URL or a folder path (for messages and listings)."""
        return self.url or str(self._root)

    def path(self, name: str) -> Path:
        """The dataset's folder (``CatalogError`` for an invalid name)."""
        return self.root / check_name(name)

    @property
    def derived_root(self) -> Path:
        """Where files derived from versions live: the catalog folder, or this machine's folder for a URL's."""
        if self.url is None:
            return self.root
        if self._derived is None:
            raise CatalogError(f"{self.url}: no local folder was given for the files derived from its versions")
        return self._derived

    def derived_path(self, name: str) -> Path:
        """The dataset's folder of derived files (its index and id segments): ``path(name)`` for a folder catalog."""
        return self.derived_root / check_name(name)

    def where(self, key: str) -> str:
        """Where the catalog keeps ``key`` (``catalog.layout``), for reports: a URL or a local path."""
        return f"{self.url}/{key}" if self.url else str(self.root / key)

    def manifest_path(self, name: str, version: int) -> Path:
        return self.root / manifest_key(check_name(name), version)

    def version_dir(self, name: str, version: int) -> Path:
        """Folder for files derived from a version (grid, card, indexes): under ``derived_root``."""
        return self.derived_root / version_dir_key(check_name(name), version)

    def shard_path(self, name: str, file: str, sha256: str) -> Path:
        """A manifest's shard entry as a path inside the dataset's ``shards/``; ``IntegrityError`` otherwise.

        The entry must be exactly ``shards/<sha256>.parquet`` for its own
        sha256, and the file must not lead out of the folder by a symlink:
        a manifest naming ``../other/shards/x.parquet`` reads nothing.
        """
        check_shard_entry(name, file, sha256)
        return confined(self.path(name) / SHARDS, f"{sha256}.parquet")

    def manifest_sha256(self, name: str, version: int) -> str:
        """The sha256 of version ``version``'s manifest bytes (FileNotFoundError when missing)."""
        return sha256_bytes(self.manifest_path(name, version).read_bytes())
