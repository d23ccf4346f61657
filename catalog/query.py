"""SQL over the catalog with DuckDB: one view per dataset head and per version.

View names replace '-' and '.' by '_': ``digits_synth`` is the head of
``digits-synth`` and ``digits_synth_v2`` its version 2. Views read the
Parquet shards listed in the manifests, never other files in the folder.
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from catalog.store import Catalog, CatalogError


def view_name(dataset: str, version: int | None = None) -> str:
    base = re.sub(r"[^a-z0-9_]", "_", dataset)
    return base if version is None else f"{base}_v{version}"


def connect(cat: Catalog) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the catalog's views defined."""
    con = duckdb.connect()
    for name in cat.names():
        head = cat.head(name)
        for m in cat.versions(name):
            files = [str(cat.path(name) / s.file) for s in m.shards]
            if not files:
                continue
            listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(f"CREATE VIEW {view_name(name, m.version)} AS SELECT * FROM read_parquet([{listing}])")
            if m.version == head:
                con.execute(f"CREATE VIEW {view_name(name)} AS SELECT * FROM {view_name(name, m.version)}")
    return con


def query(cat: Catalog, sql: str) -> pa.Table:
    """Run SQL against the catalog's views; returns Arrow."""
    con = connect(cat)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        views = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        raise CatalogError(f"query failed: {exc}\nviews: {', '.join(sorted(views)) or 'none'}") from None
