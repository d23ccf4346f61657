"""The memorisation guard's reference data, built inside the catalog and stored per version.

The pixel guard needs the real images, but only as standardised thumbnails
it compares against; it never hands an image or row out. So it is built
here from the rows directly, and a restricted real dataset guards synthetic
jobs without ``allow_restricted`` (see ``catalog.access``).

Decoding every real image for every job does not scale (ImageNet: 1.28M
decodes per job), so the thumbnails and their candidate index are computed
once, at ingest or on first use for datasets that predate this, and stored
in the version's folder like the FAISS segments::

    <name>/versions/000003/guard/thumbs.npy   standardised thumbnails (n, 16, 16) float32
    <name>/versions/000003/guard/ids.json     their sample ids, row i = id i
    <name>/versions/000003/guard/index.faiss  the candidate index (exact or IVF by size)
    <name>/versions/000003/guard/guard.json   manifest sha256, rows and each file's sha256

A job loads them (the thumbnails memory-mapped); a stale or corrupt store,
or one whose index is over another kind of descriptor, is rebuilt, never
trusted. Files are written to temp names and renamed, the
``guard.json`` that names them last.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable

import faiss
import numpy as np

from catalog.access import sealed
from catalog.atomic import atomic_write, replace_synced, temp_path
from catalog.manifest import sha256_bytes, sha256_file
from catalog.version import DatasetVersion, read_rows
from synthgen.imaging import decode
from synthgen.memorisation import (
    DESCRIPTOR, DESCRIPTOR_DIM, THUMB, PixelGuard, build_descriptor_index, build_thumb_index, descriptors, standardise,
)
from synthgen.row_file import RowFile

_BATCH = 4096  # rows decoded at a time while building: memory stays flat in the real set's size
FILES = ("thumbs.npy", "ids.json", "index.faiss")


def guard_dir(version: DatasetVersion) -> Path:
    """Where ``version`` stores its guard files."""
    return version.catalog.version_dir(version.name, version.version) / "guard"


def pixel_guard(version: DatasetVersion) -> PixelGuard:
    """A ``PixelGuard`` over the kept rows of ``version`` (restricted or not), loaded when stored.

    A restricted version opened without ``allow_restricted`` gets it sealed
    (``catalog.access.Sealed``): ``nearest`` answers, but the thumbnails,
    their index and ids are not handed out.
    """
    return _handed_out(version, read_guard_files(guard_dir(version), _manifest_sha(version)) or _build(version))


def _handed_out(version: DatasetVersion, guard: PixelGuard | None) -> PixelGuard | None:
    """``guard`` as the caller may see it: sealed for a restricted version opened without the flag."""
    return None if guard is None else sealed(guard, version.name, version.restricted, version.allow_restricted)


def build_guard(version: DatasetVersion) -> PixelGuard:
    """Compute the thumbnails and index of ``version``'s kept rows, store them, return the guard (sealed if restricted)."""
    return _handed_out(version, _build(version))


def _build(version: DatasetVersion) -> PixelGuard:
    t = read_rows(version, ["sample_id", "image"], "kept", None)
    ids = t["sample_id"].to_pylist()
    thumbs = np.zeros((len(ids), THUMB, THUMB), np.float32)
    images = t["image"].combine_chunks().field("bytes")
    for s in range(0, len(ids), _BATCH):
        for i, b in enumerate(images.slice(s, _BATCH).to_pylist()):
            thumbs[s + i] = standardise(decode(b), THUMB)
    del t, images
    index = build_thumb_index(thumbs)
    write_guard_files(guard_dir(version), ids, thumbs, index, _manifest_sha(version))
    return PixelGuard.from_thumbs(ids, thumbs, index)


def write_guard_files(folder: Path, ids: list[str], thumbs: np.ndarray, index, manifest_sha: str) -> None:
    """Store a guard's files in ``folder`` (temp names renamed), ``guard.json`` last."""
    buf = io.BytesIO()
    np.save(buf, thumbs)
    blobs = {
        "thumbs.npy": buf.getvalue(),
        "ids.json": json.dumps(ids).encode(),
        "index.faiss": faiss.serialize_index(index).tobytes(),
    }
    for name, data in blobs.items():
        atomic_write(folder / name, data)
    _write_meta(folder, len(ids), manifest_sha, {name: (sha256_bytes(d), len(d)) for name, d in blobs.items()})


def store_guard(version: DatasetVersion, rows: int, parts: Iterable[tuple[list[str], np.ndarray]]) -> None:
    """Store ``version``'s guard from thumbnails computed at ingest, without decoding a row again.

    ``parts``: (sample ids, their standardised thumbnails) of the kept rows in row order, part by part,
    ``rows`` in all. Each part is appended to ``thumbs.npy`` and its ids to ``ids.json`` before the
    next is read, and the index is built from the written thumbnails (``synthgen.row_file.RowFile``:
    descriptors of a training sample, then of the rows chunk by chunk), so memory holds one part and
    the index, never every row's thumbnails, descriptors or ids (at 1M rows: 1 GB, 256 MB and
    ~100 MB), and nothing is written but the guard's files. The files equal what ``build_guard`` writes.
    """
    folder = guard_dir(version)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = {name: temp_path(folder / name) for name in FILES}
    try:
        header, count = _write_parts(tmp, rows, parts)
        if count != rows:
            raise ValueError(f"guard of {version.ref}: {rows} rows but {count} ids")
        index = build_descriptor_index(RowFile(tmp["thumbs.npy"], THUMB * THUMB, offset=header, transform=descriptors,
                                               dim=DESCRIPTOR_DIM))
        faiss.write_index(index, str(tmp["index.faiss"]))  # the bytes serialize_index gives, without a copy in memory
        del index
        files = {name: (sha256_file(tmp[name]), tmp[name].stat().st_size) for name in FILES}
        for name in FILES:
            replace_synced(tmp[name], folder / name)
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
    _write_meta(folder, rows, _manifest_sha(version), files)


def _write_parts(tmp: dict[str, Path], rows: int, parts: Iterable[tuple[list[str], np.ndarray]]) -> tuple[int, int]:
    """Stream ``parts`` into the temp thumbnails and ids files: (the .npy header's bytes, rows written)."""
    count = 0
    with open(tmp["thumbs.npy"], "wb") as thumbs_f, open(tmp["ids.json"], "wb") as ids_f:
        np.lib.format.write_array_header_1_0(thumbs_f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                                                        "fortran_order": False, "shape": (rows, THUMB, THUMB)})
        header = thumbs_f.tell()
        ids_f.write(b"[")
        for part_ids, thumbs in parts:
            thumbs = np.ascontiguousarray(thumbs, np.float32)
            if len(thumbs) != len(part_ids):
                raise ValueError(f"{len(part_ids)} ids for {len(thumbs)} thumbnails")
            thumbs_f.write(thumbs.data)  # the array's own bytes: no copy
            # json.dumps(ids) written a part at a time: the same bytes
            ids_f.write(((", " if count and part_ids else "") + ", ".join(map(json.dumps, part_ids))).encode())
            count += len(part_ids)
        ids_f.write(b"]")
    return header, count


def _write_meta(folder: Path, rows: int, manifest_sha: str, files: dict[str, tuple[str, int]]) -> None:
    meta = {
        "manifest_sha256": manifest_sha,
        "rows": rows,
        "thumb": THUMB,
        "descriptor": DESCRIPTOR,
        "files": {name: files[name][0] for name in FILES},
        "sizes": {name: files[name][1] for name in FILES},
    }
    atomic_write(folder / "guard.json", json.dumps(meta, indent=1).encode())


def load_guard(version: DatasetVersion, check_all: bool = False) -> PixelGuard | None:
    """The stored guard of ``version``; None when missing, stale or corrupt.

    The ids are read whole and their sha256 checked; the thumbnails and the
    index are memory-mapped and checked for size, shape and row count only,
    unless ``check_all`` hashes them too (at 1M real images that is 2 GB a
    job would otherwise read only where its queries land).
    """
    return _handed_out(version, read_guard_files(guard_dir(version), _manifest_sha(version), check_all))


def read_guard_files(folder: Path, manifest_sha: str, check_all: bool = False) -> PixelGuard | None:
    """The guard stored in ``folder`` for the manifest ``manifest_sha``; None when missing, stale or corrupt."""
    try:
        meta = json.loads((folder / "guard.json").read_text())
        if meta["manifest_sha256"] != manifest_sha or meta["thumb"] != THUMB or meta.get("descriptor") != DESCRIPTOR:
            return None
        if any((folder / f).stat().st_size != meta["sizes"][f] for f in FILES):
            return None
        blobs = {f: (folder / f).read_bytes() for f in FILES if check_all or f == "ids.json"}
        if any(sha256_bytes(data) != meta["files"][f] for f, data in blobs.items()):
            return None
        ids = json.loads(blobs["ids.json"])
        thumbs = np.load(folder / "thumbs.npy", mmap_mode="r")
        index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_MMAP)
        if not (len(ids) == len(thumbs) == index.ntotal == meta["rows"]) or thumbs.shape[1:] != (THUMB, THUMB):
            return None
    except (OSError, ValueError, KeyError, RuntimeError):
        return None
    return PixelGuard.from_thumbs(ids, thumbs, index)


def _manifest_sha(version: DatasetVersion) -> str:
    return version.catalog.manifest_sha256(version.name, version.version)
