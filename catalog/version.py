"""Reading one dataset version: Arrow, pandas, torch, file lists.

A version is read only through its manifest's shard list, so versions stay
readable exactly as they were committed (time travel), and temporary or
foreign files in the folder are never seen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.access import GUARD_COLUMNS, copies_of_restricted, require_access
from catalog.errors import RestrictedError
from catalog.manifest import Manifest
from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError
from synthgen.records import KEPT

Status = Literal["kept", "all"] | str


# After '@': a version number (optionally 'v3'), or 'head' / 'latest'. No sign, spaces or leading zeros,
# and never empty: 'name@' or 'name@01' is a typo, not a request for the head.
_VERSION = re.compile(r"v?([1-9][0-9]*)|head|latest")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' or 'name@3' (also 'name@v3', 'name@head') -> (name, version or None for head)."""
    name, at, ver = ref.partition("@")
    match = _VERSION.fullmatch(ver) if at else None
    if not name or (at and match is None):
        raise CatalogError(f"bad dataset reference {ref!r}; use NAME or NAME@VERSION (versions count from 1)")
    return name, int(match.group(1)) if match and match.group(1) else None


def read_columns(columns: Sequence[str] | None) -> list[str] | None:
    """Columns to read for a selection: the requested ones plus those the filters need."""
    if not columns:
        return None
    return sorted(set(columns) | {"status", "origin"}, key=SCHEMA.names.index)


def select_rows(parts: list[pa.Table], columns: Sequence[str] | None, status: Status, origin: str | None) -> pa.Table:
    """Concatenate shard tables read with ``read_columns`` and apply the status/origin filters.

    Every reader of a version (local files, a DVC revision) goes through this,
    so they select exactly the same rows.
    """
    cols = read_columns(columns)
    table = pa.concat_tables(parts) if parts else SCHEMA.empty_table()
    if cols is not None and not parts:
        table = table.select(cols)
    if status != "all":
        table = table.filter(pc.equal(table["status"], status))
    if origin is not None:
        table = table.filter(pc.equal(table["origin"], origin))
    return table.select(list(columns)) if columns else table


@dataclass
class DatasetVersion:
    """An immutable view of one version of one dataset.

    Rows, images, embeddings and shard paths of a restricted dataset are
    handed out only when the version was opened with ``allow_restricted=True``;
    otherwise they raise ``RestrictedError`` (see ``catalog.access``). The
    same holds for a synthetic version's excluded rows that copy a
    restricted dataset's images (blocked by the memorisation guard): without
    the flag, ``table`` and ``images`` omit them and the paths of the shards
    holding them are refused.
    """

    catalog: Catalog
    manifest: Manifest
    allow_restricted: bool = False

    @property
    def name(self) -> str:
        return self.manifest.dataset

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def restricted(self) -> bool:
        """Whether the dataset is restricted (dataset.json's flag, or the one sealed in the manifest)."""
        return bool(self.catalog.info(self.name).get("restricted") or self.manifest.restricted)

    def _require(self, what: str) -> None:
        require_access({"name": self.name, "restricted": self.restricted}, self.allow_restricted, what)

    def withheld_shards(self, paths: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Shard file -> ids of its rows that copy a restricted dataset; empty when allowed or none do.

        Only shards with non-kept rows (among ``paths``, default all) are read
        (sample id, status and guard evidence columns): kept rows passed the
        memorisation guard.
        """
        if self.allow_restricted:
            return {}
        tables, where = [], []
        for ref in self.manifest.shards:
            if not ref.only_kept:
                path = str(self.catalog.verified_shard(self.name, ref))
                if paths is not None and path not in paths:
                    continue
                tables.append(pq.read_table(path, columns=["sample_id", *GUARD_COLUMNS], schema=SCHEMA))
                where += [path] * tables[-1].num_rows
        if not tables:
            return {}
        t = pa.concat_tables(tables)  # one test over every shard: the real sets are looked up once, not per shard
        out: dict[str, list[str]] = {}
        for path, sid, copy in zip(where, t["sample_id"].to_pylist(), copies_of_restricted(self.catalog, t).to_pylist()):
            if copy:
                out.setdefault(path, []).append(sid)
        return out

    def check_shards_may_leave(self) -> None:
        """``RestrictedError`` unless every shard of the version may be handed out whole (e.g. pushed)."""
        self._require_shards(_shard_paths(self))

    def _require_shards(self, paths: list[str]) -> list[str]:
        """``paths``, unless one holds rows copying a restricted dataset and the flag was not given."""
        self._require("shard files")
        withheld = self.withheld_shards(paths)
        held = [p for p in paths if p in withheld]
        if held:
            raise RestrictedError(
                f"{self.ref}: {sum(len(withheld[p]) for p in held)} excluded rows are blocked copies of restricted "
                "real data; the shards holding them need allow_restricted=True (--allow-restricted on the "
                "command line), or read the kept rows only")
        return paths

    @property
    def files(self) -> list[str]:
        """Absolute paths of this version's training shards: its kept rows (for HF datasets, DuckDB, Polars).

        Shards of versions written before the kept/excluded split hold every
        status: filter them on ``status = 'kept'`` (``table()`` does).
        """
        return self._require_shards(_shard_paths(self, "train"))

    @property
    def excluded_files(self) -> list[str]:
        """Absolute paths of the shards holding the dropped and blocked rows, with their evidence."""
        return self._require_shards(_shard_paths(self, "excluded"))

    @property
    def all_files(self) -> list[str]:
        """Every shard of the version, training and excluded, in manifest order."""
        return self._require_shards(_shard_paths(self))

    def files_for(self, status: Status) -> list[str]:
        """The shards that can hold rows of ``status``: training ones for 'kept', else all."""
        return self._require_shards(_paths_for(self, status))

    def table(
        self,
        columns: Sequence[str] | None = None,
        status: Status = "kept",
        origin: str | None = None,
    ) -> pa.Table:
        """Rows as one Arrow table; by default only rows with status 'kept'.

        Without ``allow_restricted``, excluded rows that copy a restricted
        dataset are left out (``withheld_shards``).
        """
        self._require("rows")
        if status == KEPT or self.allow_restricted:
            return read_rows(self, columns, status, origin)
        cols = None if columns is None else sorted(set(columns) | set(GUARD_COLUMNS), key=SCHEMA.names.index)
        t = read_rows(self, cols, status, origin)
        t = t.filter(pc.invert(copies_of_restricted(self.catalog, t)))
        return t.select(list(columns)) if columns else t

    def images(self, sample_ids: Sequence[str]) -> dict[str, bytes]:
        """Image bytes of the given rows (any status), without reading the rest of the image column."""
        import duckdb

        self._require("images")
        withheld = {sid for ids in self.withheld_shards().values() for sid in ids}
        rows = duckdb.connect().execute(
            "SELECT sample_id, image.bytes FROM read_parquet(?) WHERE list_contains(?, sample_id)",
            [_shard_paths(self), [sid for sid in sample_ids if sid not in withheld]],
        ).fetchall()
        return dict(rows)

    def to_pandas(self, columns: Sequence[str] | None = None, status: Status = "kept"):
        return self.table(columns, status).to_pandas()

    def to_torch(self, status: Status = "kept", transform=None):
        """A torch ``Dataset`` yielding (image tensor, label, sample id)."""
        from catalog.torch_dataset import ImageTableDataset

        return ImageTableDataset(self.table(["sample_id", "image", "label", "origin"], status), transform)

    def to_torch_iterable(self, status: Status = "kept", origin: str | None = None, shuffle: bool = True,
                          seed: int = 0, transform=None):
        """A torch ``IterableDataset`` streaming shard by shard (shuffled by shard, then within)."""
        from catalog.torch_dataset import ShardIterableDataset

        return ShardIterableDataset(self.files_for(status), status, origin, shuffle, seed, transform)


def _shard_paths(version: DatasetVersion, role: str | None = None) -> list[str]:
    """Paths of the version's shards of ``role`` (None: all), in manifest order, each hash-checked on first use."""
    cat = version.catalog
    return [str(cat.verified_shard(version.name, s)) for s in version.manifest.shards if role is None or s.role == role]


def _paths_for(version: DatasetVersion, status: Status) -> list[str]:
    """Kept rows live in training shards only; any other selection needs every shard."""
    return _shard_paths(version, "train" if status == KEPT else None)


def read_rows(version: DatasetVersion, columns: Sequence[str] | None, status: Status, origin: str | None) -> pa.Table:
    """The rows, without the access check: only for catalog code that never hands them out (cards, guards)."""
    cols = read_columns(columns)
    parts = [pq.read_table(f, columns=cols, schema=SCHEMA) for f in _paths_for(version, status)]
    return select_rows(parts, columns, status, origin)


def open_version(catalog: Catalog, ref: str, allow_restricted: bool = False) -> DatasetVersion:
    """Open 'name' (head) or 'name@N' for reading (``allow_restricted`` to read a restricted one's rows)."""
    name, version = parse_ref(ref)
    return DatasetVersion(catalog, catalog.manifest(name, version), allow_restricted)


def load(
    catalog: Catalog,
    refs: str | Sequence[str],
    origin: Literal["synthetic", "real", "both"] = "both",
    status: Status = "kept",
    columns: Sequence[str] | None = None,
    allow_restricted: bool = False,
) -> pa.Table:
    """Concatenate versions into one table, every row labelled by ``origin``.

    ``origin='synthetic'`` never returns a real row (and vice versa): the
    filter is on the row's own ``origin`` column, not on folder names.
    """
    refs = [refs] if isinstance(refs, str) else list(refs)
    want = None if origin == "both" else origin
    tables = [open_version(catalog, r, allow_restricted).table(columns, status, origin=want) for r in refs]
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def embeddings_of(version: DatasetVersion, status: Status = "kept") -> tuple[list[str], "object", set[str]]:
    """(sample ids, (n, d) float32 embeddings, embedding model names) of a version.

    Embeddings are derived from the images: a restricted dataset's (and a
    synthetic version's rows that copy one) need a version opened with
    ``allow_restricted=True``. Dedup and the memorisation guard use the
    stored indexes (``catalog.vector_index``, ``catalog.guard``), which
    answer nearest-neighbour queries without handing vectors out.
    """
    import numpy as np

    version._require("embeddings")
    t = version.table(["sample_id", "embedding", "embedding_model"], status)
    ids = t["sample_id"].to_pylist()
    models = set(t["embedding_model"].drop_null().to_pylist())
    emb_col = t["embedding"].combine_chunks()
    if len(ids) == 0 or emb_col.null_count == len(ids):
        return ids, np.zeros((0, 0), np.float32), models
    if emb_col.null_count:
        raise CatalogError(f"{version.ref}: {emb_col.null_count} rows have no embedding")
    flat = emb_col.values.to_numpy(zero_copy_only=False).astype(np.float32)
    return ids, flat.reshape(len(ids), -1), models
