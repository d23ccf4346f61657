"""Sample-id index: sorted, immutable id segments, so an audit reads a few row groups, not every shard.

Layout under a dataset folder::

    ids/<sha256>.parquet        a segment: (sample_id, shard, row) sorted by sample_id, in row
                                groups of 8192 with min/max statistics; ``shard`` is an ordinal
                                into the shard sha256 list kept in the footer's metadata
    versions/000003/ids.json    the segments that together index exactly version 3's shards

Segments are content-addressed and never rewritten, like shards. A version's
list is its parent's segments whose shards all survive in it, plus one new
segment for the other shards (usually just the added ones); past
``MAX_SEGMENTS`` it becomes one segment over all the version's shards, while
older versions keep their lists. ids.json is written after the manifest, so a
crash can leave a version without one: ``ensure_index`` rebuilds it, and
readers that cannot fall back to a scan (``Catalog.ensure_index`` writes the missing ones).
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.atomic import atomic_write
from catalog.errors import CatalogError
from catalog.files import CatalogFiles
from catalog.manifest import Manifest, ShardRef, sha256_bytes, sha256_file
from catalog.safe_paths import confined_relative

SEGMENT_ROWS = 8192
MAX_SEGMENTS = 16
FORMAT = 1
_SHARDS_KEY = b"synthgen.shards"


def ids_json_path(cat: CatalogFiles, name: str, version: int) -> Path:
    """Where version ``version``'s segment list lives."""
    return cat.version_dir(name, version) / "ids.json"


def read_ids_json(cat: CatalogFiles, name: str, version: int, manifest_sha256: str | None = None) -> list[dict] | None:
    """A version's segment entries ({file, sha256, rows}), or None if missing, unreadable or stale.

    With ``manifest_sha256``, a list written for other manifest bytes is stale.
    """
    try:
        return parse_ids_json(ids_json_path(cat, name, version).read_bytes(), version, manifest_sha256)
    except OSError:
        return None


def parse_ids_json(data: bytes, version: int, manifest_sha256: str | None = None) -> list[dict] | None:
    """``read_ids_json`` on bytes already read (from any ``catalog.storage.Storage``)."""
    try:
        doc = json.loads(data)
        if doc["format"] != FORMAT or doc["version"] != version:
            return None
        if manifest_sha256 is not None and doc["manifest_sha256"] != manifest_sha256:
            return None
        return list(doc["segments"])
    except (ValueError, KeyError, TypeError):
        return None


def segment_shards(meta: pq.FileMetaData) -> list[str]:
    """The shard sha256s a segment indexes, from its footer."""
    return json.loads(meta.metadata[_SHARDS_KEY])


@dataclass(frozen=True)
class Segment:
    """A segment's parsed footer: the shards it indexes and each row group's id range."""

    path: Path
    metadata: pq.FileMetaData
    shards: list[str]
    ranges: list[tuple[str | None, str | None]]

    def find(self, sample_id: str) -> list[tuple[str, int]]:
        """(shard sha256, row within that shard) of every entry for ``sample_id``."""
        groups = [
            i for i, (lo, hi) in enumerate(self.ranges)
            if (lo is None or lo <= sample_id) and (hi is None or sample_id <= hi)
        ]
        if not groups:
            return []
        table = pq.ParquetFile(self.path, metadata=self.metadata).read_row_groups(groups)
        hits = pc.indices_nonzero(pc.equal(table["sample_id"], sample_id))
        shards, rows = table["shard"].take(hits).to_pylist(), table["row"].take(hits).to_pylist()
        return [(self.shards[s], r) for s, r in zip(shards, rows)]


def stat_key(path: Path) -> tuple[int, int, int]:
    """Changes when a file is replaced or rewritten."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class FileCache:
    """Values parsed from files, reloaded when a file's inode, size or mtime changes.

    Shards and segments are immutable, so parsing a footer once per process is
    enough; the stat check still notices a file replaced behind our back.
    """

    def __init__(self, limit: int = 4096):
        self.limit = limit
        self._items: dict[Path, tuple[tuple, object]] = {}

    def get(self, path: Path, load, fresh=lambda value: True):
        """``load(path)``, or the cached value while the file is unchanged and ``fresh(value)``."""
        key = stat_key(path)
        hit = self._items.get(path)
        if hit and hit[0] == key and fresh(hit[1]):
            return hit[1]
        if len(self._items) >= self.limit:
            self._items.clear()
        value = load(path)
        self._items[path] = (key, value)
        return value


def _range(rg: pq.RowGroupMetaData) -> tuple[str | None, str | None]:
    stats = rg.column(0).statistics
    if stats is None or not stats.has_min_max:
        return None, None  # no statistics: the group can hold any id
    return stats.min, stats.max


def _load_segment(path: Path, sha256: str | None) -> tuple[Segment | None, bool]:
    if sha256 is not None and (path.stem != sha256 or sha256_file(path) != sha256):
        return None, True
    meta = pq.read_metadata(path)
    shards = segment_shards(meta)
    ranges = [_range(meta.row_group(i)) for i in range(meta.num_row_groups)]
    return Segment(path, meta, shards, ranges), sha256 is not None


_segments = FileCache()


def open_segment(path: Path, sha256: str | None = None) -> Segment | None:
    """A segment's parsed footer, or None if unreadable.

    With ``sha256`` the file's bytes must hash to it, else None (not trusted).
    The hash is checked once per process and file version: hashing a 10M-row
    segment on every lookup would cost more than the lookup.
    """
    try:
        seg, _ = _segments.get(path, lambda p: _load_segment(p, sha256), lambda v: v[1] or sha256 is None)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None
    return seg


def version_lacks(cat, name: str, version: int, sample_ids: set[str]) -> set[str] | None:
    """The ids of ``sample_ids`` that version ``version`` of ``name`` holds no row with, by its id index.

    None when the version has no index to trust (none written, stale, a segment that does not hash to
    its entry): the caller scans instead. Each id the index finds is confirmed in its shard, read
    hash-checked (``cat.verified_file``), so a forged segment can hide rows but never invent them.
    ``cat``: a ``catalog.Catalog`` (another judge, e.g. a shared catalog's ``StoredDatasets``, keeps no
    index: None).
    """
    if not isinstance(cat, CatalogFiles) or getattr(cat, "objects", None) is not None:  # no index at a URL
        return None
    try:
        return _lacks(cat, name, version, sample_ids)
    except (OSError, pa.ArrowException):  # a segment replaced or damaged since its hash was checked: scan
        return None


def _lacks(cat, name: str, version: int, sample_ids: set[str]) -> set[str] | None:
    entries = read_ids_json(cat, name, version, cat.manifest_sha256(name, version))
    if entries is None:
        return None
    segments = []
    for entry in entries:
        try:
            seg = open_segment(confined_relative(cat.derived_path(name), entry["file"], "id segment"), entry["sha256"])
        except (CatalogError, KeyError, TypeError):
            return None
        if seg is None:
            return None
        segments.append(seg)
    files = {ref.sha256: ref.file for ref in cat.manifest(name, version).shards}
    lacked = set()
    for sample_id in sample_ids:
        hits = [(sha, row) for seg in segments for sha, row in seg.find(sample_id) if sha in files]
        if not any(_row_id(cat.verified_file(name, files[sha], sha), row) == sample_id for sha, row in hits):
            lacked.add(sample_id)
    return lacked


def _layout(path: Path) -> tuple[pq.FileMetaData, list[int]]:
    meta = pq.read_metadata(path)
    return meta, list(itertools.accumulate((meta.row_group(i).num_rows for i in range(meta.num_row_groups)),
                                           initial=0))


_layouts = FileCache()


def read_row(path: Path, row: int, columns: list[str]) -> dict:
    """Row ``row`` of the Parquet file at ``path`` (``columns`` only), reading just its row group;
    ``IndexError`` past its end. The footer is parsed once per process and file version."""
    meta, starts = _layouts.get(path, _layout)
    group = bisect.bisect_right(starts, row) - 1
    if not 0 <= group < meta.num_row_groups:
        raise IndexError(f"{path}: no row {row}")
    table = pq.ParquetFile(path, metadata=meta).read_row_group(group, columns=columns)
    return table.slice(row - starts[group], 1).to_pylist()[0]


def _row_id(path: Path, row: int) -> str | None:
    """The sample id at ``row`` of the shard at ``path``; None past its end."""
    try:
        return read_row(path, row, ["sample_id"])["sample_id"]
    except IndexError:
        return None


def build_segment(cat: CatalogFiles, name: str, refs: list[ShardRef]) -> dict:
    """Index the sample ids of ``refs`` into one new segment; return its ids.json entry."""
    parts = []
    for ordinal, ref in enumerate(refs):
        ids = pq.read_table(cat.shard_path(name, ref.file, ref.sha256), columns=["sample_id"])["sample_id"]
        n = len(ids)
        parts.append(pa.table({
            "sample_id": ids,
            "shard": pa.array(np.full(n, ordinal, np.int32)),
            "row": pa.array(np.arange(n, dtype=np.int32)),
        }))
    table = pa.concat_tables(parts).combine_chunks()
    table = table.filter(pc.is_valid(table["sample_id"]))
    # sort_indices is stable, so equal ids keep shard/row order: same shards, same bytes, same file.
    table = table.take(pc.sort_indices(table["sample_id"]))
    table = table.replace_schema_metadata({_SHARDS_KEY: json.dumps([r.sha256 for r in refs]).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, row_group_size=SEGMENT_ROWS, compression="zstd", use_dictionary=["shard"])
    data = buf.getvalue().to_pybytes()
    digest = sha256_bytes(data)
    path = cat.derived_path(name) / "ids" / f"{digest}.parquet"
    if not path.is_file():
        atomic_write(path, data)
    return {"file": f"ids/{digest}.parquet", "sha256": digest, "rows": table.num_rows}


def index_version(cat: CatalogFiles, manifest: Manifest) -> list[dict]:
    """Write ids.json for a committed version, reusing its parent's segments; return the entries."""
    name = manifest.dataset
    wanted = {s.sha256: s for s in manifest.shards}
    parent = read_ids_json(cat, name, manifest.parent, manifest.parent_sha256) if manifest.parent else None
    segments, covered = [], set()
    for entry in parent or []:
        seg = open_segment(confined_relative(cat.derived_path(name), entry["file"], "id segment"))
        # A parent segment is reusable only if every shard it indexes is still in this version.
        if seg is not None and set(seg.shards) <= wanted.keys():
            segments.append(entry)
            covered.update(seg.shards)
    rest = [ref for sha, ref in wanted.items() if sha not in covered]
    if rest:
        segments.append(build_segment(cat, name, rest))
    if len(segments) > MAX_SEGMENTS:
        segments = [build_segment(cat, name, list(wanted.values()))]
    doc = {
        "format": FORMAT,
        "dataset": name,
        "version": manifest.version,
        "manifest_sha256": cat.manifest_sha256(name, manifest.version),
        "segments": segments,
    }
    atomic_write(ids_json_path(cat, name, manifest.version), (json.dumps(doc, indent=2) + "\n").encode())
    return segments


def index_commit(cat: CatalogFiles, manifest: Manifest) -> None:
    """Commit hook: index the new version. The commit already stands, so a failure only warns."""
    try:
        index_version(cat, manifest)
    except Exception as exc:  # noqa: BLE001 - audit rebuilds the list or scans
        warnings.warn(f"{manifest.dataset}@{manifest.version}: sample-id index not written ({exc})", stacklevel=3)
