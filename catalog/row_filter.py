"""A user's SQL row filter (``--where``), run where it can read nothing but the rows it filters.

``takedown --where`` and ``search --where`` take a DuckDB boolean expression
from the command line. Pasted into a query over ``read_parquet`` as it was,
it could read any file the user running synthgen can (``label IN (SELECT ...
FROM read_csv('/etc/passwd'))``), write one (``1=1); COPY ... TO ...``), or
run a second statement. Here the rows are handed to DuckDB as an Arrow
dataset (scanned by pyarrow, only the columns the filter names), the
connection is then sealed as ``synthgen query``'s is (``catalog.query``),
and the filter must be exactly one expression.
"""

from __future__ import annotations

import duckdb
import pyarrow.dataset as pads

from catalog.query import seal
from catalog.schema import SCHEMA
from catalog.store import CatalogError


def select_ids(files: list[str], where: str) -> set[str]:
    """Sample ids of the rows in ``files`` that match the DuckDB boolean expression ``where``."""
    if not where or not where.strip():
        raise CatalogError("bad --where filter: it is empty (e.g. \"label = 7\" or \"prompt LIKE '%logo%'\")")
    if not files:
        return set()
    sql = f"SELECT sample_id FROM rows WHERE ({where})"
    try:
        # One expression parses both bare and in parentheses: "label = 7) OR (1=1" (which would take
        # down every row) and "x = 1 LIMIT 0" each parse only one way, "1=1; COPY ..." as several statements.
        for text in (sql, f"SELECT sample_id FROM rows WHERE {where}"):
            if len(duckdb.extract_statements(text)) != 1:
                raise CatalogError(f"bad --where filter {where!r}: it must be one expression, not several statements")
        con = duckdb.connect()
        try:
            con.register("rows", pads.dataset(files, schema=SCHEMA, format="parquet"))
            seal(con)  # after the rows are registered: from here on, nothing the filter says can open a file
            return {r[0] for r in con.execute(sql).fetchall()}
        finally:
            con.close()
    except duckdb.Error as exc:
        raise CatalogError(f"bad --where filter {where!r}: {exc}") from None
