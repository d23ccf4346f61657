"""A version's gallery index: its rows' light columns in a DuckDB file, built once, sorted once per order.

A gallery page must cost the same at 10^6 rows as at 10^3. The shards hold
images and embeddings (most of their bytes), so reading them per page would
scale with the version. Instead, the first visit writes one DuckDB file per
version (versions are immutable, so it never goes stale) with a copy of the
light columns per sort order, physically in that order and numbered
(``rank``). A page is then ``WHERE rank > last_seen [AND filters] ORDER BY
rank LIMIT n``: DuckDB skips the row groups before ``last_seen`` by their
min/max and stops once the page is full (keyset paging, no OFFSET).

The rows are read through ``DatasetVersion.table``, so an index holds what
the app may show: without ``--allow-restricted`` the blocked copies of
restricted real images are left out (only their number is kept, for the
page to say so). The file is named by the access it was built with, so an
index an app with the flag built is never read by one without it; and,
without the flag, by the state of the real sets its rows were guarded
against (restriction and head): which copies may be shown depends on them
(``catalog.access.judge_sources``), so a takedown or a restriction there
makes a new index instead of leaving withheld rows listed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from catalog import Catalog, CatalogError, DatasetVersion, open_version
from catalog.atomic import temp_path
from catalog.schema import SCHEMA
from synthgen.rules import evidence_columns

FORMAT = 3  # bump when the index's tables change: older files are then simply not used
SIMILARITIES = ["nn_similarity", "real_nn_similarity", "real_pixel_distance"]
MEASURES = ["clip_score", *[c for c in evidence_columns() if c != "clip_score"]]
NUMERIC = SIMILARITIES + MEASURES  # the columns a gallery filters by range
LIGHT = ["sample_id", "origin", "status", "label", "label_name", "prompt", "plan_index", "nn_id", "nn_source",
         "real_nn_id", "drop_reason", *NUMERIC]
# Sort orders: the table holding them and its ORDER BY. Most similar first: what a reviewer looks at.
SORTS = {
    "plan": "plan_index NULLS LAST, row_no",
    "nn": "nn_similarity DESC NULLS LAST, row_no",
    "real": "real_nn_similarity DESC NULLS LAST, row_no",
}
FACETS_LIMIT = 1000  # classes or prompts offered in the filter's list (most frequent first)
# DuckDB skips data by row group (default 122,880 rows): a page would decode that many rows at 10^6 and
# only 10^4 at 10^4. Groups of 16,384 made the first page at 10^6 rows 2 ms instead of 18 (bench/bench_ui.py).
ROW_GROUP_SIZE = 16_384


def _read_light(version: DatasetVersion) -> pa.Table:
    """The light columns of every row ``version`` hands out, numbered in shard and row order (``row_no``)."""
    light = version.table([c for c in LIGHT if c in SCHEMA.names], status="all")
    return light.append_column("row_no", pa.array(range(light.num_rows), pa.int64()))


def _base(version: DatasetVersion, manifest_sha256: str) -> str:
    """The start of every index file name of ``version``."""
    return f"v{version.version:06d}-{manifest_sha256[:16]}"


def real_sets_named(version: DatasetVersion) -> list[str]:
    """The datasets ``version``'s copies name as the real set they were guarded against or started from
    (read from the shards holding rows that are not kept: a kept row is no copy)."""
    cat, names = version.catalog, set()
    for ref in version.manifest.shards:
        if ref.only_kept:
            continue
        path = cat.verified_shard(version.name, ref)
        columns = [c for c in ("real_dataset", "init_dataset") if c in pq.read_schema(path).names]
        for column in pq.read_table(path, columns=columns).columns:
            names.update(pc.unique(column.drop_null()).to_pylist())
    return sorted(names)


def build(version: DatasetVersion, path: Path) -> None:
    """Write ``version``'s gallery index to ``path`` (temp name, then rename: readers never see half of it)."""
    tmp = temp_path(path)
    # If the sorts spill, they spill beside the index, not into the current folder (DuckDB's default).
    con = duckdb.connect(config={"temp_directory": str(path.parent / ".duckdb-tmp")})
    try:
        con.execute(f"ATTACH '{str(tmp).replace(chr(39), chr(39) * 2)}' AS ix (ROW_GROUP_SIZE {ROW_GROUP_SIZE})")
        light = _read_light(version)
        con.register("light", light)
        for sort, order in SORTS.items():
            con.execute(f"CREATE TABLE ix.t_{sort} AS SELECT row_number() OVER (ORDER BY {order}) AS rank, * "
                        f"FROM light ORDER BY rank")
        con.execute("CREATE TABLE ix.facets AS SELECT coalesce(label_name, prompt) AS name, count(*) AS rows "
                    f"FROM light WHERE coalesce(label_name, prompt) IS NOT NULL GROUP BY ALL "
                    f"ORDER BY rows DESC, name LIMIT {FACETS_LIMIT}")
        # How many rows the version holds that this index leaves out (blocked copies of restricted images).
        held = sum(shard.rows for shard in version.manifest.shards)
        con.execute("CREATE TABLE ix.withheld AS SELECT ?::BIGINT AS rows", [held - light.num_rows])
        con.execute("DETACH ix")
    finally:
        con.close()
    tmp.replace(path)


class Indexes:
    """Open gallery indexes, one per version, built on first use under ``root``.

    Held by the app (not a module global); each request reads through its own
    cursor, since a DuckDB connection is not shared between threads.
    """

    def __init__(self, root: Path):
        self.root = root
        self._open: dict[Path, duckdb.DuckDBPyConnection] = {}
        self._lock = threading.Lock()
        self._sources: dict[tuple[str, str], list[str]] = {}  # (dataset, manifest sha256) -> real sets named

    def path(self, version: DatasetVersion, manifest_sha256: str) -> Path:
        """Where ``version``'s index lives, for the access it is opened with."""
        # Named by the manifest's hash: a dataset deleted and made again under the same name gets a new index.
        # And by access: an index built with --allow-restricted lists rows an app without it must not show;
        # without it, by the state of the real sets that decides which copies it may show.
        access = "all" if version.allow_restricted else f"open-{self.sources_state(version, manifest_sha256)}"
        return self.root / version.name / f"{_base(version, manifest_sha256)}-{access}-f{FORMAT}.duckdb"

    def sources_state(self, version: DatasetVersion, manifest_sha256: str) -> str:
        """A digest of each real set ``version``'s rows were guarded against or started from: restricted or
        not, and its HEAD (what ``catalog.access.judge_sources`` judges the copies by). Two small reads per
        set and request; the sets' names are read from the version once."""
        key = (version.name, manifest_sha256)
        with self._lock:
            names = self._sources.get(key)
        if names is None:  # a version's rows never change: read the names once
            names = real_sets_named(version)
            with self._lock:
                self._sources[key] = names
        cat = version.catalog
        state = []
        for name in names:
            try:
                sealed = cat.head_sha256(name)
                restricted = bool(sealed and cat.info(name).get("restricted"))
            except CatalogError:  # no such dataset, or not a name one can have: no real set
                sealed, restricted = None, False
            state.append([name, restricted, sealed])
        return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:12]

    def cursor(self, version: DatasetVersion, manifest_sha256: str) -> duckdb.DuckDBPyConnection:
        """A cursor on ``version``'s index, building the index first if no process has yet."""
        path = self.path(version, manifest_sha256)
        with self._lock:
            con = self._open.get(path)
        if con is None:
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(path) + ".lock"):  # another request or process may be building it
                    if not path.is_file():
                        build(version, path)
            with self._lock:
                con = self._open.setdefault(path, duckdb.connect(str(path), read_only=True))
            if not version.allow_restricted:
                self._drop_stale(path, f"{_base(version, manifest_sha256)}-open-")
        return con.cursor()

    def _drop_stale(self, path: Path, prefix: str) -> None:
        """Forget and delete the indexes of the same version built for an earlier state of its real sets."""
        with self._lock:
            for other in [p for p in self._open if p != path and p.parent == path.parent and p.name.startswith(prefix)]:
                # Not closed here: a request may still read through a cursor of it; the last one frees it.
                self._open.pop(other)
        for other in path.parent.glob(f"{prefix}*.duckdb"):
            if other != path:
                other.unlink(missing_ok=True)  # a reader elsewhere keeps its open file until it closes it
                Path(str(other) + ".lock").unlink(missing_ok=True)

    def close(self) -> None:
        """Close every open index."""
        with self._lock:
            for con in self._open.values():
                con.close()
            self._open.clear()


def warm(cat: Catalog, indexes: Indexes, allow_restricted: bool) -> list[str]:
    """Build the index of every dataset's head that has none yet (the app does it in the background at start).

    Returns the refs it could not index, with why; a failure here only means the first visit builds it.
    """
    failed = []
    for name in cat.names():
        try:
            if (cat.info(name).get("restricted") and not allow_restricted) or not cat.head(name):
                continue
            v = open_version(cat, name, allow_restricted)
            indexes.cursor(v, cat.manifest_sha256(name, v.version)).close()
        except (CatalogError, OSError, duckdb.Error, pa.ArrowException) as exc:
            failed.append(f"{name}: {exc}")
    return failed
