"""Where a local catalog's files live: the part of ``Catalog`` that the id index needs too.

``catalog.store.Catalog`` builds on this class and ``catalog.id_index`` takes
it as its argument, so neither module imports the other's internals (the
store calls the index after each commit; the index only needs paths).
Every path is built from a checked name (``catalog.safe_paths``).
"""

from __future__ import annotations

import re
from pathlib import Path

from catalog.errors import IntegrityError
from catalog.layout import SHARDS, manifest_key, version_dir_key
from catalog.manifest import sha256_bytes
from catalog.safe_paths import check_name, confined

_SHARD_FILE = re.compile(r"shards/([0-9a-f]{64})\.parquet")


class CatalogFiles:
    """Paths under one catalog root on this machine."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """The dataset's folder (``CatalogError`` for an invalid name)."""
        return self.root / check_name(name)

    def manifest_path(self, name: str, version: int) -> Path:
        return self.root / manifest_key(check_name(name), version)

    def version_dir(self, name: str, version: int) -> Path:
        """Folder for files derived from a version (grid, card)."""
        return self.root / version_dir_key(check_name(name), version)

    def shard_path(self, name: str, file: str, sha256: str) -> Path:
        """A manifest's shard entry as a path inside the dataset's ``shards/``; ``IntegrityError`` otherwise.

        The entry must be exactly ``shards/<sha256>.parquet`` for its own
        sha256, and the file must not lead out of the folder by a symlink:
        a manifest naming ``../other/shards/x.parquet`` reads nothing.
        """
        match = _SHARD_FILE.fullmatch(file) if isinstance(file, str) else None
        if match is None or match.group(1) != sha256:
            raise IntegrityError(f"{name}: manifest lists shard {file!r}, not a file named by its sha256 "
                                 f"inside {SHARDS}/; the catalog is CORRUPT (run synthgen verify {name})")
        return confined(self.path(name) / SHARDS, f"{sha256}.parquet")

    def manifest_sha256(self, name: str, version: int) -> str:
        """The sha256 of version ``version``'s manifest bytes (FileNotFoundError when missing)."""
        return sha256_bytes(self.manifest_path(name, version).read_bytes())
