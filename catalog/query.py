"""SQL over the catalog with DuckDB: one view per dataset head and per version.

View names replace '-' and '.' by '_': ``digits_synth`` is the head of
``digits-synth`` and ``digits_synth_v2`` its version 2. Views read the
Parquet shards listed in the manifests, never other files in the folder:
the plain views a version's training shards (what a trainer reads),
``digits_synth_all`` / ``digits_synth_v2_all`` every row, dropped and
blocked ones included.

The connection is sandboxed: each view is an Arrow dataset over its
version's shards, registered before DuckDB's external access is switched
off and the configuration locked. A query therefore reads the catalog's
own shards (through Arrow) and nothing else: ``read_csv('/etc/...')``,
``COPY ... TO``, ``ATTACH`` and ``INSTALL`` fail. (DuckDB's
``allowed_paths`` was not used: it lets ``COPY ... TO`` overwrite an
allowed shard.) Restricted datasets get no views unless allowed.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from catalog.access import GUARD_COLUMNS, judge_sources, restricted_copy_test
from catalog.safe_paths import view_base
from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError
from catalog.version import DatasetVersion, read_rows


def view_name(dataset: str, version: int | None = None, every_row: bool = False) -> str:
    base = view_base(dataset)
    name = base if version is None else f"{base}_v{version}"
    return f"{name}_all" if every_row else name


def connect(cat: Catalog, allow_restricted: bool = False) -> duckdb.DuckDBPyConnection:
    """A sandboxed DuckDB connection with the catalog's views defined (restricted ones only when allowed).

    Every shard is hash-checked against its manifest before it is
    registered. Without ``allow_restricted``, the ``_all`` views leave out
    excluded rows that copy a restricted dataset (``catalog.access``). A
    view name two datasets would share (``digits.synth`` and
    ``digits-synth``; a dataset ``x_v2`` and version 2 of ``x``) is not
    defined at all, so no dataset can stand in for another.
    """
    views: dict[str, list[tuple[str, ds.Dataset]]] = {}
    for name in cat.names():
        if cat.info(name).get("restricted") and not allow_restricted:
            continue
        head = cat.head(name)
        for m in cat.versions(name):
            version = DatasetVersion(cat, m, allow_restricted)
            for every_row in (False, True):
                files = [str(cat.verified_shard(name, s)) for s in m.shards if every_row or s.role == "train"]
                if not files:
                    continue
                rows = ds.dataset(files, schema=SCHEMA, format="parquet")
                if every_row and not allow_restricted and version.withheld_shards():
                    rows = rows.filter(_not_a_restricted_copy(cat, version))
                for view in (view_name(name, m.version, every_row),) + ((view_name(name, None, every_row),)
                                                                        if m.version == head else ()):
                    views.setdefault(view, []).append((name, rows))
    con = duckdb.connect()
    for view, owners in views.items():
        if len({owner for owner, _ in owners}) == 1:
            con.register(view, owners[0][1])
    return seal(con)


def _not_a_restricted_copy(cat: Catalog, version: DatasetVersion) -> ds.Expression:
    """``catalog.access.copies_of_restricted`` of ``version``'s rows, negated, as a filter Arrow applies while
    DuckDB scans (the sources its copies may be shown beside are judged first, from its guard columns)."""
    guard = read_rows(version, ["sample_id", *GUARD_COLUMNS], "all", None)
    return pc.invert(restricted_copy_test(judge_sources(cat, guard), ds.field))


def seal(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Switch off ``con``'s file-system access for good; the Arrow datasets registered before stay readable.

    DuckDB keeps its temp directory (``./.tmp`` by default) readable and
    writable even with external access off, so each connection first gets
    a private, empty one (removed with the connection): ``COPY ... TO
    '.tmp/x'`` and ``read_text('.tmp/*')`` then fail like any other path.
    """
    private = tempfile.mkdtemp(prefix="synthgen-duckdb-")
    weakref.finalize(con, shutil.rmtree, private, True)
    con.execute(f"SET temp_directory = '{private}'")  # mkdtemp's name: no quote can be in it
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")  # so the query cannot switch it back on
    return con


def query(cat: Catalog, sql: str, allow_restricted: bool = False) -> pa.Table:
    """Run SQL against the catalog's views; returns Arrow. No file outside the catalog can be read or written."""
    return query_head(cat, sql, allow_restricted, None)[0]


def query_head(cat: Catalog, sql: str, allow_restricted: bool = False,
               limit: int | None = None, con: duckdb.DuckDBPyConnection | None = None) -> tuple[pa.Table, bool]:
    """The first ``limit`` rows of ``sql`` (None: all), and whether there are more.

    The result is streamed batch by batch and reading stops after ``limit``
    rows, so ``SELECT * FROM range(10^9)`` costs what is printed, not what
    the query could return. ``con``: a connection from ``connect`` (made here
    when None), so that a caller can ``interrupt()`` the query from another thread.
    """
    if not sql.strip().strip(";").strip():
        raise CatalogError("empty query; give a SELECT statement, e.g. \"SELECT count(*) FROM <dataset>\"")
    con = con or connect(cat, allow_restricted)
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement with no result (e.g. SET) or only empty statements
            raise CatalogError(f"query {sql!r} returns no rows to show; give a SELECT statement")
        reader = rel.to_arrow_reader(min(limit + 1, 100_000) if limit is not None else 100_000)
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if limit is not None and rows > limit:
                break
        table = pa.Table.from_batches(batches, reader.schema)
    except duckdb.Error as exc:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        hidden = [n for n in cat.names() if cat.info(n).get("restricted") and not allow_restricted]
        note = f"\nrestricted (pass --allow-restricted): {', '.join(hidden)}" if hidden else ""
        raise CatalogError(f"query failed: {exc}\nviews: {', '.join(sorted(views)) or 'none'}{note}") from None
    if limit is not None and table.num_rows > limit:
        return table.slice(0, limit), True
    return table, False
