"""Persistent FAISS indexes of each dataset version's kept embeddings.

Dedup asks "what is the nearest kept row of this version?" of a dataset's
previous head and of a real dataset on every job; these indexes answer it
without rebuilding FAISS each time. A version's index is a list of immutable
segments (LSM style), each a FAISS index over a run of kept rows plus their
sample ids:

* a version that only adds shards to its parent (an ordinary job's commit)
  reuses the parent's segments and adds one segment of its new kept rows
  (merged with recent ones when compaction says so), so storage grows with
  the rows, not with versions x rows;
* a version whose shards do not start with its parent's (takedown, rededup,
  mix: rows dropped or rewritten) gets fresh segments of exactly its kept rows;
* old versions keep their own segment lists: version 1's index is still the
  one it had, and returns version 1's rows only.

Layout under the dataset folder::

    <name>/index/<sha256>.faiss        a segment: faiss.serialize_index bytes
    <name>/index/<sha256>.ids.json     its sample ids (JSON list; row i of the index is id i)
    <name>/versions/000003/index.json  version 3's index: embedding model, dimension,
                                       kept rows, and its segments in row order with the
                                       sha256 and FAISS type of each

Segment files are content-addressed and never rewritten with other bytes or
deleted, so a reader holding an older ``index.json`` always finds its files.
Invariant: the segments' ids, concatenated, are the version's kept sample ids
in table order.

Each segment's FAISS type follows its size (``synthgen.index.build_index``:
exact ``IndexFlatIP`` up to ``EXACT_INDEX_LIMIT`` rows, calibrated IVF beyond), and
compaction (``plan_compaction``) keeps the whole set's type following its
size, as autofaiss chooses: exact segments hold at most ``EXACT_INDEX_LIMIT`` rows
together (beyond, they merge into one IVF segment), so a search scans at most
that many rows exhaustively; and ``MERGE_FACTOR`` adjacent segments of one
size level merge into one (size-tiered, as in LSM trees), so a dataset of n
rows has O(log n) segments and each row is rewritten O(log n) times. Up to
``EXACT_INDEX_LIMIT`` kept rows every segment is exact, and a search over the
segments equals one over a single ``IndexFlatIP`` of all kept rows (ties:
the earlier row wins), so dedup decisions are those of one exact index.

A version's index is a function of the version chain and the embedding model
alone: whether built lazily (``version_index`` when it is missing) or right
after a commit, the build walks back to the nearest ancestor that has a valid
index (through versions that extend their parent) and builds forward from it,
so both paths write the same segments.

Loading checks the embedding model, the version (its manifest's sha256), the
kept row count and every file's sha256; an index that does not check out is
rebuilt and rewritten, never trusted. A version keeps one index: asking for
another embedding model's replaces it (its old segments stay on disk). Writes go through ``atomic_write``
(temp + fsync + rename), segments before the ``index.json`` that names them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import faiss
import numpy as np

from catalog.access import sealed
from catalog.manifest import Manifest, sha256_bytes
from catalog.safe_paths import confined_relative
from catalog.store import Catalog, CatalogError, atomic_write
from catalog.version import DatasetVersion, embeddings_of, open_version, read_rows
from synthgen.vector_set import VectorSet
from synthgen.index import EXACT_INDEX_LIMIT, SegmentedVectorSet, build_index, describe
from synthgen.records import KEPT

FORMAT = 1
# EXACT_INDEX_LIMIT (imported above) is read at call time, so a test can lower it here.
# Adjacent segments of one size level (sizes within a factor of 4) merge 4 at a
# time. A fixed cap on the segment count instead (merge the smallest pair past
# 8) made the newest segment absorb every commit: 1k-row commits up to 2M rows
# rewrote each row ~98 times, against ~5 here (at most 15 segments).
MERGE_FACTOR = 4

# Embeds encoded images (PNG bytes) into the index's space, for rows another model embedded.
Reembed = Callable[[list[bytes]], np.ndarray]


@dataclass
class VersionIndex(SegmentedVectorSet):
    """One version's index: its segments, searchable as one set (``nearest``).

    ``records`` describe the segments as ``index.json`` does (files, sha256s,
    rows, FAISS type); ``loaded`` says whether it was read from disk rather
    than built by this call.
    """

    dataset: str = ""
    version: int = 0
    embedding_model: str = ""
    records: list[dict] = field(default_factory=list)
    loaded: bool = False

    @property
    def dim(self) -> int | None:
        return int(self.parts[0].index.d) if self.parts else None


def index_path(cat: Catalog, name: str, version: int) -> Path:
    """Where version ``version`` of ``name`` lists its index segments."""
    return cat.version_dir(name, version) / "index.json"


def version_index(
    cat: Catalog, ref: str, model: str, reembed: Reembed | None = None, parent: VersionIndex | None = None,
    allow_restricted: bool = False,
) -> VersionIndex:
    """The index of version ``ref`` ('name' or 'name@N') in ``model``'s embedding space.

    Loads the persisted index when it checks out; otherwise builds it (after
    the missing indexes of the ancestors it extends), persists it and returns
    it; a version has one index, so another model's is replaced. Rows embedded
    by another model, or not at all, are re-embedded with ``reembed``
    (CatalogError when it is None). ``parent`` is an index already in memory
    (e.g. of the version just before a commit), used instead of reading it
    back when the chain reaches it.

    A restricted dataset's index is returned sealed (``catalog.access.Sealed``:
    ``nearest`` answers, no vectors or ids) unless ``allow_restricted``.
    """
    version = open_version(cat, ref)
    manifest = version.manifest
    found = _known(cat, manifest, model, parent)
    todo: list[tuple[Manifest, Manifest | None]] = []
    while found is None:
        base = extended_parent(cat, manifest)
        todo.append((manifest, base))
        if base is None:
            break
        manifest = base
        found = _known(cat, manifest, model, parent)
    for manifest, base in reversed(todo):
        found = _build(cat, manifest, base, model, reembed, found)
    return sealed(found, version.name, version.restricted, allow_restricted)


def load_index(cat: Catalog, name: str, version: int, model: str) -> VersionIndex | None:
    """The persisted index of ``name@version`` for ``model``; None when missing, stale or corrupt."""
    path = index_path(cat, name, version)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_bytes())
        if meta["embedding_model"] != model:
            return None  # another model's space: not an error, just not this index
        manifest = cat.manifest(name, version)
        if (meta["format"], meta["dataset"], meta["version"]) != (FORMAT, name, version):
            raise ValueError("written for another dataset version or format")
        if meta["manifest_sha256"] != cat.manifest_sha256(name, version):
            raise ValueError("written for another manifest")
        kept = manifest.rows_by_status.get(KEPT, 0) if manifest.rows_by_status else meta["rows"]
        if meta["rows"] != kept:
            raise ValueError(f"lists {meta['rows']} rows, the version keeps {kept}")
        parts = [_read_segment(cat.derived_path(name), rec, meta["dim"]) for rec in meta["segments"]]
        if sum(int(p.index.ntotal) for p in parts) != meta["rows"]:
            raise ValueError("segments do not add up to its rows")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        # Never trusted: the caller rebuilds it and writes the index again.
        warnings.warn(f"{name}@{version}: ignoring index {path}: {exc}", stacklevel=2)
        return None
    return VersionIndex(parts, name, version, model, meta["segments"], loaded=True)


def plan_compaction(rows: list[int], exact_limit: int, factor: int = MERGE_FACTOR) -> list[tuple[int, int]]:
    """Which adjacent segments to merge: ``[start, stop)`` ranges over segment sizes ``rows`` (old to new).

    Merges, until none applies:

    1. exact segments (at most ``exact_limit`` rows) right before an IVF one
       join it: that keeps exact segments at the end, and when the IVF one is
       the new segment it is built once, with them;
    2. the trailing exact segments, once they hold more than ``exact_limit``
       rows together, become one (IVF) segment;
    3. ``factor`` adjacent segments of one size level (``_level``) become one,
       the newest such run first.

    Only adjacent segments merge, so the segments stay in row order.
    """
    groups = [(i, i + 1, r) for i, r in enumerate(rows)]
    while (span := _next_merge([r for _, _, r in groups], exact_limit, factor)) is not None:
        a, b = span
        groups[a:b] = [(groups[a][0], groups[b - 1][1], sum(r for _, _, r in groups[a:b]))]
    return [(start, stop) for start, stop, _ in groups]


def _next_merge(sizes: list[int], exact_limit: int, factor: int) -> tuple[int, int] | None:
    """The first merge ``plan_compaction``'s rules call for, or None."""
    exact = [r <= exact_limit for r in sizes]
    n = len(sizes)
    for i in range(n - 1):
        if exact[i] and not exact[i + 1]:
            return _exact_run_start(exact, i + 1), i + 2
    tail = _exact_run_start(exact, n)
    if n - tail > 1 and sum(sizes[tail:]) > exact_limit:
        return tail, n
    levels = [_level(r, factor) for r in sizes]
    for i in range(n - factor, -1, -1):
        if len(set(levels[i : i + factor])) == 1:
            return i, i + factor
    return None


def _exact_run_start(exact: list[bool], stop: int) -> int:
    """Start of the run of exact segments that ends at ``stop``."""
    start = stop
    while start > 0 and exact[start - 1]:
        start -= 1
    return start


def _level(rows: int, factor: int) -> int:
    """Size level: floor(log_factor(rows)), in integers (no float edge cases)."""
    level = 0
    while rows >= factor:
        rows //= factor
        level += 1
    return level


# -- building -------------------------------------------------------------------
def _known(cat: Catalog, manifest: Manifest, model: str, parent: VersionIndex | None) -> VersionIndex | None:
    """An index of ``manifest``'s version for ``model`` that needs no building, if any."""
    name, version = manifest.dataset, manifest.version
    if parent is not None and (parent.dataset, parent.version, parent.embedding_model) == (name, version, model):
        return parent
    return load_index(cat, name, version, model)


def extended_parent(cat: Catalog, manifest: Manifest) -> Manifest | None:
    """The parent's manifest when this version is the parent's shards plus new ones, else None.

    Shards are content-addressed, so equal leading shards mean equal leading
    kept rows, and the parent's index covers exactly those.
    """
    if manifest.parent is None:
        return None
    parent = cat.manifest(manifest.dataset, manifest.parent)
    lead = [s.sha256 for s in manifest.shards[: len(parent.shards)]]
    return parent if lead == [s.sha256 for s in parent.shards] else None


def _build(
    cat: Catalog, manifest: Manifest, base: Manifest | None, model: str, reembed: Reembed | None,
    base_index: VersionIndex | None,
) -> VersionIndex:
    """Build, persist and return the index of ``manifest``: ``base_index`` + its new kept rows, compacted."""
    name = manifest.dataset
    new_shards = manifest.shards[len(base.shards) :] if base else manifest.shards
    # Inside the catalog: the vectors go into the index, which is handed out sealed when restricted.
    ids, emb = kept_embeddings(DatasetVersion(cat, manifest.model_copy(update={"shards": new_shards}),
                                              allow_restricted=True), model, reembed)
    parts = list(base_index.parts) if base_index else []
    records = list(base_index.records) if base_index else []
    if ids and parts and emb.shape[1] != parts[0].index.d:
        raise CatalogError(f"{name}@{manifest.version}: new rows have {emb.shape[1]} dims, "
                           f"the index {parts[0].index.d} (both said to be {model})")
    parts, records = _compact(cat, name, parts, records, (ids, emb) if ids else None)
    out = VersionIndex(parts, name, manifest.version, model, records)
    meta = {
        "format": FORMAT,
        "dataset": name,
        "version": manifest.version,
        "manifest_sha256": cat.manifest_sha256(name, manifest.version),
        "embedding_model": model,
        "dim": out.dim,
        "rows": out.ntotal,
        "segments": records,
    }
    atomic_write(index_path(cat, name, manifest.version), (json.dumps(meta, indent=2) + "\n").encode())
    return out


def kept_embeddings(version: DatasetVersion, model: str, reembed: Reembed | None) -> tuple[list[str], np.ndarray]:
    """Kept ids and embeddings of ``version``'s shards in ``model``'s space."""
    ids, emb, models = embeddings_of(version)
    if ids and (models != {model} or emb.shape[1] == 0):
        if reembed is None:
            raise CatalogError(f"{version.ref}: kept rows are embedded with {sorted(models) or 'no model'}, "
                               f"not {model}; cannot index them without re-embedding")
        # re-embedded for the index only, so a restricted dataset needs no allow_restricted here
        images = read_rows(version, ["image"], "kept", None)["image"].combine_chunks().field("bytes").to_pylist()
        emb = np.asarray(reembed(images), dtype=np.float32)
    return ids, emb


def _compact(
    cat: Catalog, name: str, parts: list[VectorSet], records: list[dict], new: tuple[list[str], np.ndarray] | None
) -> tuple[list[VectorSet], list[dict]]:
    """``parts`` + a segment of the ``new`` rows, merged as ``plan_compaction`` says.

    The new rows are planned with the existing segments before anything is
    built, so a new segment that merges at once is built only as part of the
    merged one. Untouched segments keep their files.
    """
    sizes = [int(p.index.ntotal) for p in parts] + ([len(new[0])] if new else [])
    out_parts, out_records = [], []
    for start, stop in plan_compaction(sizes, EXACT_INDEX_LIMIT, MERGE_FACTOR):
        if stop - start == 1 and start < len(parts):
            out_parts.append(parts[start])
            out_records.append(records[start])
            continue
        ids: list[str] = []
        vectors = []
        for k in range(start, stop):
            if k < len(parts):
                ids += parts[k].ids
                # Back from the index itself: Flat and IVFFlat store vectors
                # uncompressed, so a merged segment equals one built from the rows.
                vectors.append(_stored_vectors(parts[k].index))
            else:
                ids += new[0]
                vectors.append(new[1])
        part, record = _write_segment(cat, name, ids, np.concatenate(vectors))
        out_parts.append(part)
        out_records.append(record)
    return out_parts, out_records


def _stored_vectors(index: faiss.Index) -> np.ndarray:
    """Every vector of a Flat or IVFFlat index, in the order they were added."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return index.reconstruct_n(0, index.ntotal)
    ivf.make_direct_map()  # IVF needs id -> (list, offset) to reconstruct; dropped again below
    try:
        return index.reconstruct_n(0, index.ntotal)
    finally:
        ivf.make_direct_map(False)


def _write_segment(cat: Catalog, name: str, ids: list[str], emb: np.ndarray) -> tuple[VectorSet, dict]:
    """Build a segment over ``emb`` (type by size), write its files and return it with its record."""
    index = build_index(emb, exact_limit=EXACT_INDEX_LIMIT)
    blobs = {"faiss": (faiss.serialize_index(index).tobytes(), "faiss"),
             "ids": (json.dumps(ids).encode(), "ids.json")}
    record: dict = {}
    for key, (data, ext) in blobs.items():
        digest = sha256_bytes(data)
        rel = f"index/{digest}.{ext}"
        # Same name, same bytes: replacing is safe for concurrent readers, and
        # it repairs a corrupted copy of this segment.
        atomic_write(cat.derived_path(name) / rel, data)
        record[key], record[f"{key}_sha256"] = rel, digest
    choice = describe(index)
    record.update(rows=len(ids), kind=choice.kind, nlist=choice.nlist, nprobe=choice.nprobe)
    return VectorSet(list(ids), index), record


def _read_segment(base: Path, record: dict, dim: int) -> VectorSet:
    """A segment from its files, after checking their sha256s (ValueError when they do not match)."""
    data = confined_relative(base, record["faiss"], "index segment").read_bytes()
    ids_data = confined_relative(base, record["ids"], "index segment ids").read_bytes()
    if sha256_bytes(data) != record["faiss_sha256"] or sha256_bytes(ids_data) != record["ids_sha256"]:
        raise ValueError(f"segment {record['faiss']} does not match its sha256")
    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    ids = json.loads(ids_data)
    if not (index.ntotal == len(ids) == record["rows"]) or index.d != dim:
        raise ValueError(f"segment {record['faiss']} holds {index.ntotal} vectors of {index.d} dims for "
                         f"{len(ids)} ids, expected {record['rows']} of {dim}")
    return VectorSet(ids, index)
