"""Audit: everything the catalog knows about one sample.

A lookup reads one row group of each id segment that matters (see
``catalog.id_index``) and then the one row group of the shard holding the row,
so it costs the same at 10 million rows as at 10. A dataset whose index is
missing and cannot be rebuilt, or whose segments do not hash to the sha256
their ids.json records, is scanned with DuckDB instead: the answer never
depends on the index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.access import GUARD_COLUMNS, copies_of_restricted
from catalog.errors import RestrictedError
from catalog.id_index import FileCache, open_segment, read_ids_json, read_row
from catalog.layout import HEAD_MAX_BYTES, head_key
from catalog.manifest import Manifest
from catalog.safe_paths import confined_relative
from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError

_SKIP = ("image", "embedding")


@dataclass
class AuditRecord:
    """A sample's row (minus image bytes and embedding) and where it lives."""

    sample_id: str
    dataset: str
    row: dict
    shard: str
    versions: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    """One dataset at one head: shard sha256 -> (file, versions listing it), and the segments to read."""

    shards: dict[str, tuple[str, list[int]]]
    segments: list[tuple[Path, str]] | None  # None: no usable index, scan


_plans: dict[Path, tuple[str, _Plan]] = {}  # HEAD file -> (its text, plan): one entry per dataset


def read_manifests(cat: Catalog, name: str) -> list[tuple[Manifest, str]]:
    """Every version's manifest (checked as a chain from HEAD), with the sha256 of its bytes."""
    manifests = cat.versions(name)
    # Each manifest's sha256 is the one its child (or HEAD, for the head) recorded and the chain checked.
    shas = [m.parent_sha256 for m in manifests[1:]] + [cat.head_sha256(name)]
    return list(zip(manifests, shas))


def shard_versions(manifests: list[tuple[Manifest, str]]) -> dict[str, tuple[str, list[int]]]:
    """shard sha256 -> (file, the versions listing it)."""
    shards: dict[str, tuple[str, list[int]]] = {}
    for m, _ in manifests:
        for s in m.shards:
            versions = shards.setdefault(s.sha256, (s.file, []))[1]
            if m.version not in versions:
                versions.append(m.version)
    return shards


def _plan(cat: Catalog, name: str) -> _Plan:
    head_file = cat.where(head_key(name))  # a path or a URL: the key of this HEAD in the plan cache
    head = (cat.storage.read_prefix(head_key(name), HEAD_MAX_BYTES + 1) or b"").decode("ascii", "replace")
    if head_file in _plans and _plans[head_file][0] == head:  # manifests and segments are immutable
        return _plans[head_file][1]
    manifests = read_manifests(cat, name)
    shards = shard_versions(manifests)
    lists = [read_ids_json(cat, name, m.version, sha) for m, sha in manifests]
    if None in lists and cat.ensure_index(name):
        lists = [read_ids_json(cat, name, m.version, sha) for m, sha in manifests]
    plan = _Plan(shards, None if None in lists else _cover(cat, name, lists, shards.keys()))
    if plan.segments is not None:
        _plans[head_file] = (head, plan)
    return plan


def _cover(cat: Catalog, name: str, lists: list[list[dict]], shards) -> list[tuple[Path, str]] | None:
    """Segments indexing every committed shard: the head's, then older ones only for dropped shards."""
    chosen, covered = [], set()
    for entries in reversed(lists):
        for e in entries:
            try:
                seg = open_segment(confined_relative(cat.derived_path(name), e["file"], "id segment"))
            except CatalogError:
                return None  # an entry naming a file outside the dataset: not an index to trust
            if seg is None:
                return None
            if not covered.issuperset(seg.shards):
                chosen.append((seg.path, e["sha256"]))
                covered.update(seg.shards)
    return chosen if covered.issuperset(shards) else None


@functools.cache
def _duckdb_timezone() -> ZoneInfo | None:
    try:
        return ZoneInfo(duckdb.connect().execute("SELECT current_setting('TimeZone')").fetchone()[0])
    except (duckdb.Error, KeyError, ValueError):
        return None


def _like_duckdb(value):
    """DuckDB (the scan) returns aware timestamps in its session zone; do the same so both paths print alike."""
    if isinstance(value, datetime) and value.tzinfo is not None and _duckdb_timezone() is not None:
        return value.astimezone(_duckdb_timezone())
    return value


_columns = FileCache()  # shard -> the columns an audit record shows


def _read_row(path: Path, row: int) -> dict:
    """Row ``row`` of a shard, without image and embedding, reading only its row group."""
    columns = _columns.get(path, lambda p: [n for n in pq.read_schema(p).names if n not in _SKIP])
    return {k: _like_duckdb(v) for k, v in read_row(path, row, columns).items()}


def _from_index(cat: Catalog, name: str, plan: _Plan, sample_id: str) -> list[AuditRecord] | None:
    """Records via the id index, or None if the index cannot be trusted for this lookup."""
    hits: set[tuple[str, int]] = set()
    for path, sha in plan.segments:
        seg = open_segment(path, sha)
        if seg is None:
            return None
        hits.update(seg.find(sample_id))
    found = []
    for sha, row in hits:
        if sha not in plan.shards:
            continue  # indexed, but listed by no version
        file, versions = plan.shards[sha]
        path = cat.verified_file(name, file, sha)
        values = _read_row(path, row)
        if values.get("sample_id") != sample_id:
            return None  # the index disagrees with the shard
        found.append((str(path), row, AuditRecord(sample_id, name, values, str(path), sorted(versions))))
    return [rec for *_, rec in sorted(found, key=lambda f: f[:2])]


def _scan(cat: Catalog, name: str, plan: _Plan, sample_id: str) -> list[AuditRecord]:
    """Records via a DuckDB scan of every committed shard of the dataset."""
    shards = {str(cat.verified_file(name, file, sha)): sorted(versions) for sha, (file, versions) in plan.shards.items()}
    if not shards:
        return []
    rel = duckdb.connect().execute(
        "SELECT * EXCLUDE (image, embedding), filename FROM read_parquet(?, filename=true) WHERE sample_id = ?",
        [sorted(shards), sample_id],
    )
    cols = [d[0] for d in rel.description]
    records = []
    for values in rel.fetchall():
        row = dict(zip(cols, values))
        shard = row.pop("filename")
        records.append(AuditRecord(sample_id, name, row, shard, shards[str(Path(shard))]))
    return records


def audit(catalog: Catalog, sample_id: str, allow_restricted: bool = False) -> list[AuditRecord]:
    """Find a sample id in every committed shard of every dataset, ordered by shard path.

    Restricted datasets are searched only with ``allow_restricted``: without
    it, an id found nowhere else raises ``RestrictedError`` naming the
    datasets not searched, whether or not they hold it, so the answer
    tells nothing about their contents (no membership oracle). Rows that
    copy a restricted dataset's images (``catalog.access``) are answered
    the same way, as if absent.
    """
    records, skipped = [], []
    for name in catalog.names():
        if catalog.info(name).get("restricted") and not allow_restricted:
            skipped.append(name)
            continue
        plan = _plan(catalog, name)
        found = None
        if plan.segments is not None:
            try:
                found = _from_index(catalog, name, plan, sample_id)
            except (OSError, IndexError, ValueError, pa.ArrowException):
                found = None  # a shard or segment changed under us: the scan still answers
        found = found if found is not None else _scan(catalog, name, plan, sample_id)
        if found and not allow_restricted:  # a blocked copy of a restricted image is withheld like the image
            guard = pa.table({c: pa.array([r.row.get(c) for r in found], SCHEMA.field(c).type) for c in GUARD_COLUMNS})
            copies = copies_of_restricted(catalog, guard).to_pylist()
            found = [r for r, copy in zip(found, copies) if not copy]  # answered as a miss: no oracle
        records += found
    if not records and skipped:
        raise RestrictedError(f"no sample {sample_id!r} in the datasets you may read; restricted datasets were not "
                              f"searched ({', '.join(skipped)}): pass allow_restricted=True (--allow-restricted)")
    return sorted(records, key=lambda r: r.shard)  # stable: rows of one shard stay in row order


def image_of(record: AuditRecord) -> bytes | None:
    """The image bytes of an audited row, read from the one shard that holds it (None if it is gone).

    For comparisons (audit re-encoding a row to check a signed JPEG); the
    record was found under the caller's access rules.
    """
    found = duckdb.connect().execute(
        "SELECT image.bytes FROM read_parquet(?) WHERE sample_id = ? LIMIT 1", [record.shard, record.sample_id]
    ).fetchone()
    return found[0] if found else None
