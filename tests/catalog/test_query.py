"""catalog.query: an empty query is a clear error, and a huge result is read only as far as it is shown."""

import pytest

from catalog import Catalog, CatalogError
from catalog.query import query, query_head


@pytest.mark.parametrize("sql", ["", "   ", "   ;", " ; ;\n"])
def test_an_empty_query_is_named(tmp_path, sql):
    with pytest.raises(CatalogError, match="empty query"):
        query(Catalog(tmp_path), sql)


def test_a_statement_without_rows_is_named(tmp_path):
    with pytest.raises(CatalogError, match="returns no rows to show"):
        query(Catalog(tmp_path), "-- only a comment")


def test_query_head_stops_reading_at_the_limit(tmp_path):
    table, more = query_head(Catalog(tmp_path), "SELECT * FROM range(10000000)", limit=5)
    assert table.num_rows == 5 and more and table.column("range").to_pylist() == [0, 1, 2, 3, 4]
    table, more = query_head(Catalog(tmp_path), "SELECT * FROM range(5)", limit=5)
    assert table.num_rows == 5 and not more
    assert query(Catalog(tmp_path), "SELECT * FROM range(3)").num_rows == 3


def test_an_error_while_rows_stream_is_a_query_error(tmp_path):
    with pytest.raises(CatalogError, match="query failed"):
        query_head(Catalog(tmp_path), "SELECT CAST('x' || range AS INTEGER) FROM range(10)", limit=5)
