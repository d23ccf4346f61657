"""Read a dataset version as it was at a git revision, through DVC.

The catalog folder is plain files (see ``catalog.store``), so a project can
version it with DVC like any other data folder::

    dvc add synthgen-data/catalog/digits-synth    # one directory output per dataset
    git add synthgen-data/catalog/digits-synth.dvc synthgen-data/catalog/.gitignore
    git commit -m "digits-synth v3" && git tag digits-synth-v3
    dvc push                                      # shards and manifests to the DVC remote

Repeat after every catalog commit. Shards are immutable and named by their
sha256, and manifests are never rewritten, so each ``dvc add`` puts only the
new shard files, the new manifest, the changed ``HEAD`` and the version's new
index files (its id-index segment and list; a job's FAISS segment) into the
DVC cache; the objects of earlier versions are reused, not copied. (``dvc add`` also picks
up the empty ``.lock`` file and any derived ``versions/NNNNNN/`` files; they are
harmless and never read here.)

A training script can then pull the rows it trained on, by revision, from any
clone, even one without the data checked out::

    from catalog.dvc_io import read_version_at
    table = read_version_at(".", rev="digits-synth-v3", ref="digits-synth")     # head at that tag
    table = read_version_at("https://github.com/org/proj", rev="main", ref="digits-synth@2")

Everything goes through ``dvc.api.DVCFileSystem``, seen as a
``catalog.storage.Storage`` rooted at the catalog folder (the layer local
and shared catalogs are read through too): git objects for the
``.dvc`` files at ``rev``, then the local DVC cache or, failing that, the
default DVC remote for the file contents. Nothing is written to the working
copy. Only the files a version's manifest lists are read, exactly as
``DatasetVersion.table`` does, and each shard's bytes are checked against the
sha256 in the manifest, because the bytes came over a network from a remote
that this process does not control.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.implementations.dirfs import DirFileSystem

from catalog.access import GUARD_COLUMNS, copies_of_restricted, require_access
from catalog.layout import head_key, manifest_key, parse_head, shard_file
from catalog.manifest import Manifest, sha256_bytes
from catalog.schema import SCHEMA
from catalog.storage import Storage
from catalog.stored_datasets import stored_datasets
from catalog.errors import CatalogError, IntegrityError
from catalog.version import Status, parse_ref, read_columns, select_rows
from synthgen.records import KEPT

DEFAULT_CATALOG_PATH = "synthgen-data/catalog"

# Shards up to this size are verified and parsed in memory; larger ones spill
# to a temporary file so a multi-GB shard does not need that much RAM.
_SPOOL_MAX = 256 << 20
_CHUNK = 1 << 20


@contextmanager
def dvc_fs(repo: str, rev: str | None = None, **fs_kwargs: Any) -> Iterator[Any]:
    """``dvc.api.DVCFileSystem`` for ``repo`` at ``rev``, closed on exit.

    ``repo`` is a local path or a git URL; ``fs_kwargs`` go to DVCFileSystem
    (``remote=``, ``remote_config=``, ``config=``...). Closing matters: for a
    URL, DVC clones into a temporary folder that lives as long as the fs.
    """
    from dvc.api import DVCFileSystem  # dvc is heavy; import only when used

    fs = DVCFileSystem(repo, rev=rev, **fs_kwargs)
    try:
        yield fs
    finally:
        fs.close()


def _missing(fs: Any, path: str, what: str, exc: FileNotFoundError) -> CatalogError:
    """Say which of two very different problems a FileNotFoundError from DVC is.

    DVC raises FileNotFoundError both for a path the revision does not have
    and for a tracked file whose content is in neither the local cache nor
    the remote ("No storage files available"); the fix differs (wrong ref or
    rev vs. a missing ``dvc push``), so the message must too.
    """
    try:
        tracked = fs.exists(path)
    except Exception:  # the listing itself may be unavailable; keep the original reason
        tracked = False
    # Name the file from the repo root, also when ``fs`` is a Storage's view rooted at the catalog.
    shown = f"{fs.path}/{path}" if isinstance(fs, DirFileSystem) and fs.path else path
    if tracked:
        return CatalogError(
            f"{shown} is tracked at this revision but its content is in neither the local DVC cache "
            f"nor the DVC remote (was `dvc push` run after `dvc add`?): {exc}"
        )
    return CatalogError(f"{what}: {shown} not found at this revision")


def _read_small(storage: Storage, key: str, what: str) -> bytes:
    try:
        with storage.open(key) as f:
            return f.read()
    except FileNotFoundError as exc:
        raise _missing(storage.files, key, what, exc) from None


def _manifest(storage: Storage, ref: str) -> Manifest:
    name, version = parse_ref(ref)
    head_sha = None
    if version is None:
        data = _read_small(storage, head_key(name), f"dataset {name!r} has no versions (or is not tracked)")
        version, head_sha = parse_head(data)
    key = manifest_key(name, version)
    data = _read_small(storage, key, f"dataset {name!r} has no version {version}")
    # HEAD seals the head manifest's hash; checking it catches a HEAD and a
    # manifest that came from different commits (e.g. a half-done dvc add).
    if head_sha is not None and sha256_bytes(data) != head_sha:
        raise IntegrityError(f"{storage.where(key)}: sha256 {sha256_bytes(data)} does not match "
                             f"{storage.where(head_key(name))} ({head_sha})")
    manifest = Manifest.model_validate_json(data)
    if manifest.dataset != name or manifest.version != version:
        raise IntegrityError(f"{storage.where(key)} describes {manifest.dataset}@{manifest.version}, "
                             f"not {name}@{version}")
    return manifest


def manifest_at(
    repo: str, rev: str | None, ref: str, catalog_path: str = DEFAULT_CATALOG_PATH, **fs_kwargs: Any
) -> Manifest:
    """The manifest of ``ref`` ('name' = head, or 'name@N') as committed at git ``rev``."""
    with dvc_fs(repo, rev, **fs_kwargs) as fs:
        return _manifest(Storage.over(fs, catalog_path), ref)


def copy_verified(fs: Any, path: str, sha256: str, dst: BinaryIO, what: str = "shard", missing=None) -> None:
    """Stream ``path`` from ``fs`` into the binary file ``dst``, hashing the bytes as they arrive.

    Raises ``IntegrityError`` naming the file when they do not hash to
    ``sha256``; the caller must then discard what ``dst`` received. A missing
    file becomes ``missing(fs, path, what, exc)`` (default: this module's
    DVC-aware message). Any fsspec filesystem works (DVC, S3, local).
    """
    h = hashlib.sha256()
    try:
        with fs.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
                dst.write(chunk)
    except FileNotFoundError as exc:
        raise (missing or _missing)(fs, path, f"{what} listed in the manifest", exc) from None
    if h.hexdigest() != sha256:
        raise IntegrityError(f"{what} {path}: sha256 is {h.hexdigest()}, manifest says {sha256}")


def _read_shard(fs: Any, path: str, sha256: str, columns: list[str] | None, missing=None) -> pa.Table:
    """Read one shard, hashing its bytes as they arrive; refuse it on mismatch.

    Parquet is read footer-first (random access), so the bytes are spooled to
    memory or a temp file while hashing, and parsed only once the hash matches:
    no row from a corrupt or substituted file reaches the caller.
    """
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX) as spool:
        copy_verified(fs, path, sha256, spool, missing=missing)
        spool.seek(0)
        return pq.read_table(spool, columns=columns, schema=SCHEMA)


def read_verified_rows(
    storage: Storage,
    manifest: Manifest,
    columns: Sequence[str] | None,
    status: Status,
    origin: str | None,
    missing=None,
) -> pa.Table:
    """A version's rows from any storage, every shard hash-checked, selected as ``DatasetVersion.table`` does."""
    cols = read_columns(columns)
    for s in manifest.shards:  # never a file outside the dataset's shards/, whatever the manifest says
        if s.file != shard_file(s.sha256):
            raise IntegrityError(f"{manifest.dataset}@{manifest.version}: manifest lists shard {s.file!r}, not "
                                 f"{shard_file(s.sha256)}; refusing to read it")
    parts = [_read_shard(storage.files, f"{manifest.dataset}/{s.file}", s.sha256, cols, missing)
             for s in manifest.shards if status != "kept" or s.role == "train"]  # kept rows: training shards only
    return select_rows(parts, columns, status, origin)


def read_shown_rows(
    storage: Storage,
    manifest: Manifest,
    columns: Sequence[str] | None,
    status: Status,
    origin: str | None,
    allow_restricted: bool,
    missing=None,
) -> pa.Table:
    """``read_verified_rows``, less the rows only ``allow_restricted`` may read: excluded rows that copy a
    restricted real dataset (``copies_of_restricted``), as ``DatasetVersion.table`` leaves them out.

    The real sets are judged as ``storage`` itself holds them (a shared
    catalog, a DVC revision), not as any local catalog does: one absent
    there counts as restricted. The dataset's own restricted flag is the
    caller's to check (``require_access``).
    """
    if status == KEPT or allow_restricted:  # a kept row passed the memorisation guard
        return read_verified_rows(storage, manifest, columns, status, origin, missing)
    cols = None if columns is None else sorted(set(columns) | set(GUARD_COLUMNS), key=SCHEMA.names.index)
    t = read_verified_rows(storage, manifest, cols, status, origin, missing)
    with stored_datasets(storage, missing or _missing) as judge:
        t = t.filter(pc.invert(copies_of_restricted(judge, t)))
    return t.select(list(columns)) if columns else t


def read_version_at(
    repo: str,
    rev: str | None,
    ref: str,
    catalog_path: str = DEFAULT_CATALOG_PATH,
    status: Status = "kept",
    columns: Sequence[str] | None = None,
    origin: str | None = None,
    allow_restricted: bool = False,
    **fs_kwargs: Any,
) -> pa.Table:
    """Rows of dataset ``ref`` as it was at git revision ``rev`` of ``repo``.

    ``ref`` is 'name' (the head recorded in that revision's ``HEAD``) or
    'name@N' (version N, which is the same at every later revision because
    manifests and shards are immutable). ``rev`` is any git revision (tag,
    branch, sha); None means the working copy. ``catalog_path`` is the
    catalog root relative to the repo root. ``status``, ``columns`` and
    ``origin`` filter as in ``DatasetVersion.table``. Raises
    ``IntegrityError`` naming the file when a shard's bytes do not match
    its manifest. A dataset restricted at that revision needs ``allow_restricted``,
    and so do excluded rows that copy a restricted real dataset, judged
    against the catalog at that revision: a real set it does not hold, or
    holds without the rows copied, counts as restricted (``read_shown_rows``).
    """
    with dvc_fs(repo, rev, **fs_kwargs) as fs:
        storage = Storage.over(fs, catalog_path)
        manifest = _manifest(storage, ref)
        info = json.loads(_read_small(storage, f"{manifest.dataset}/dataset.json", "dataset metadata"))
        # the manifest's flag is sealed by HEAD; dataset.json's is not
        require_access({**info, "restricted": bool(info.get("restricted") or manifest.restricted)}, allow_restricted)
        return read_shown_rows(storage, manifest, columns, status, origin, allow_restricted)

