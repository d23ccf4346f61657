"""One read layer for a catalog root on any fsspec filesystem: a local folder, ``s3://``, a DVC revision.

Keys are the ``catalog.layout`` keys (``name/HEAD``, ``name/versions/000003.json``,
``name/shards/<sha256>.parquet``), relative to the root, so every reader
(``Catalog``, ``RemoteCatalog``, pull, DVC reads, verify, audit) asks for the
same key whatever holds the bytes. Writes are not here: a local catalog
commits with temp file + fsync + rename under its file lock
(``catalog.store``), a shared one with put-if-absent and compare-and-swap
(``catalog.objectstore``), and a DVC revision is read-only.

Modelled on lance's dataset API (one class over local paths and object
stores, the filesystem chosen from the URL and ``storage_options``)::

    Storage.local("synthgen-data/catalog").read("digits/HEAD")
    Storage.over(DVCFileSystem(".", rev="v3"), "synthgen-data/catalog")
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, BinaryIO

from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

from catalog.layout import HEAD_MAX_BYTES, head_key, manifest_key, parse_head, version_dir_key
from catalog.manifest import Manifest

_CHUNK = 1 << 20


class Storage:
    """A catalog root: ``fs`` is the filesystem, ``files`` the same rooted at the catalog (keys are relative)."""

    def __init__(self, fs: Any, root: str, url: str | None = None):
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = (url if url is not None else root).rstrip("/")
        self.local = isinstance(fs, LocalFileSystem)
        # A shared catalog's publish protocol commits a version when its manifest is created, and the
        # next push rolls HEAD forward over it (``catalog.publish``): there, manifests past HEAD that
        # extend it are committed versions, not a HEAD moved back.
        self.rolls_forward = False
        # At a filesystem's top, keys already are its paths (and DirFileSystem refuses an empty root).
        self.files = DirFileSystem(path=self.root, fs=fs) if self.root else fs

    @classmethod
    def local(cls, path: str | Path) -> "Storage":
        """A folder on this machine; messages name files as ``str(path / key)``."""
        return cls(LocalFileSystem(), str(Path(path).absolute()), url=str(path))

    @classmethod
    def over(cls, fs: Any, root: str = "") -> "Storage":
        """A catalog under ``root`` (a path inside ``fs``; '' for its top), e.g. a DVC revision's catalog folder."""
        root = root.strip("/").replace("\\", "/")  # DVC paths are POSIX, relative to the repo root
        return cls(fs, root, url=root)

    def where(self, key: str) -> str:
        """``key`` as a full path or URL, for messages."""
        return f"{self.url}/{key}" if self.url else key

    # -- bytes --------------------------------------------------------------
    def read(self, key: str) -> bytes | None:
        """A small file's bytes, or None when it does not exist."""
        try:
            return self.files.cat_file(key)
        except FileNotFoundError:
            return None

    def read_prefix(self, key: str, limit: int) -> bytes | None:
        """At most ``limit`` bytes from the start of ``key``, or None when it does not exist.

        For files whose size is not ours to trust (HEAD): a hostile one of
        gigabytes costs ``limit`` bytes of memory.
        """
        try:
            return self.files.cat_file(key, start=0, end=limit)
        except FileNotFoundError:
            return None

    def open(self, key: str) -> BinaryIO:
        """A binary file object for ``key`` (random access: Parquet footers are read through it)."""
        return self.files.open(key, "rb")

    def glob(self, pattern: str) -> list[str]:
        """Keys matching ``pattern`` (relative to the root)."""
        return list(self.files.glob(pattern))

    def sha256(self, key: str, dst: BinaryIO | None = None) -> str:
        """The sha256 of ``key``'s bytes, streamed (and copied into ``dst`` if given); FileNotFoundError if absent."""
        h = hashlib.sha256()
        with self.open(key) as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
                if dst is not None:
                    dst.write(chunk)
        return h.hexdigest()

    # -- the layout ---------------------------------------------------------
    def names(self) -> list[str]:
        """Datasets that have a ``dataset.json``."""
        return sorted(k.split("/")[0] for k in self.glob("*/dataset.json"))

    def info(self, name: str) -> dict | None:
        """The dataset's ``dataset.json``, or None when it has none."""
        data = self.read(f"{name}/dataset.json")
        return None if data is None else json.loads(data)

    def head(self, name: str) -> tuple[int, str | None]:
        """(head version, its manifest's sha256) as HEAD says; (0, None) without a HEAD.

        Reads at most ``HEAD_MAX_BYTES + 1`` bytes; a malformed HEAD is ``IntegrityError``.
        """
        key = head_key(name)
        return parse_head(self.read_prefix(key, HEAD_MAX_BYTES + 1), self.where(key))

    def manifest_bytes(self, name: str, version: int) -> bytes | None:
        """Version ``version``'s manifest as stored, or None."""
        return self.read(manifest_key(name, version))

    def beyond_head(self, name: str, head: int, sealed: str | None) -> str | None:
        """Why the manifests past HEAD show that HEAD was moved back over published versions; None if they do not.

        One manifest just past HEAD that extends it and has no derived files
        yet is a commit in progress (or one killed before moving HEAD): its
        version was never published. Anything else (two or more manifests
        past HEAD, one that does not extend HEAD, or one whose id list, card
        or reports exist, which are written only once HEAD names it) means
        HEAD no longer names the newest published version: a takedown could
        be undone that way.
        """
        nxt = self.manifest_bytes(name, head + 1)
        if nxt is None:
            return None
        after = self.manifest_bytes(name, head + 2) is not None
        try:
            m = Manifest.model_validate_json(nxt)
            extends = (m.dataset, m.version, m.parent, m.parent_sha256) == (name, head + 1, head or None, sealed)
        except ValueError:
            extends = False
        if self.rolls_forward and extends:
            return None
        if after or not extends or self.files.exists(version_dir_key(name, head + 1)):
            return (f"{self.where(head_key(name))} names version {head or 'none'}, but version {head + 1} "
                    f"{'and later ones were' if after else 'was'} published after it (HEAD was moved back, or a pull was interrupted: rerun it)")
        return None
