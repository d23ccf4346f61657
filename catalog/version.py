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

from catalog.access import require_access
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

    Rows, images and shard paths of a restricted dataset are handed out only
    when the version was opened with ``allow_restricted=True``; otherwise
    they raise ``RestrictedError`` (see ``catalog.access``).
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
        return bool(self.catalog.info(self.name).get("restricted"))

    def _require(self, what: str) -> None:
        require_access(self.catalog.info(self.name), self.allow_restricted, what)

    @property
    def files(self) -> list[str]:
        """Absolute paths of this version's training shards: its kept rows (for HF datasets, DuckDB, Polars).

        Shards of versions written before the kept/excluded split hold every
        status: filter them on ``status = 'kept'`` (``table()`` does).
        """
        self._require("shard files")
        return _shard_paths(self, "train")

    @property
    def excluded_files(self) -> list[str]:
        """Absolute paths of the shards holding the dropped and blocked rows, with their evidence."""
        self._require("shard files")
        return _shard_paths(self, "excluded")

    @property
    def all_files(self) -> list[str]:
        """Every shard of the version, training and excluded, in manifest order."""
        self._require("shard files")
        return _shard_paths(self)

    def files_for(self, status: Status) -> list[str]:
        """The shards that can hold rows of ``status``: training ones for 'kept', else all."""
        self._require("shard files")
        return _paths_for(self, status)

    def table(
        self,
        columns: Sequence[str] | None = None,
        status: Status = "kept",
        origin: str | None = None,
    ) -> pa.Table:
        """Rows as one Arrow table; by default only rows with status 'kept'."""
        self._require("rows")
        return _read(self, columns, status, origin)

    def images(self, sample_ids: Sequence[str]) -> dict[str, bytes]:
        """Image bytes of the given rows (any status), without reading the rest of the image column."""
        import duckdb

        self._require("images")
        rows = duckdb.connect().execute(
            "SELECT sample_id, image.bytes FROM read_parquet(?) WHERE list_contains(?, sample_id)",
            [self.all_files, list(sample_ids)],
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
    """Paths of the version's shards of ``role`` (None: all), in manifest order."""
    base = version.catalog.path(version.name)
    return [str(base / s.file) for s in version.manifest.shards if role is None or s.role == role]


def _paths_for(version: DatasetVersion, status: Status) -> list[str]:
    """Kept rows live in training shards only; any other selection needs every shard."""
    return _shard_paths(version, "train" if status == KEPT else None)


def _read(version: DatasetVersion, columns: Sequence[str] | None, status: Status, origin: str | None) -> pa.Table:
    """The rows, without the access check: only for readers that never hand them out."""
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

    Allowed on a restricted dataset without ``allow_restricted``: dedup and
    the memorisation guard compare against embeddings, they never hand rows out.
    """
    import numpy as np

    t = _read(version, ["sample_id", "embedding", "embedding_model"], status, None)
    ids = t["sample_id"].to_pylist()
    models = set(t["embedding_model"].drop_null().to_pylist())
    emb_col = t["embedding"].combine_chunks()
    if len(ids) == 0 or emb_col.null_count == len(ids):
        return ids, np.zeros((0, 0), np.float32), models
    if emb_col.null_count:
        raise CatalogError(f"{version.ref}: {emb_col.null_count} rows have no embedding")
    flat = emb_col.values.to_numpy(zero_copy_only=False).astype(np.float32)
    return ids, flat.reshape(len(ids), -1), models
