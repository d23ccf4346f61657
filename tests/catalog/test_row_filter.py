"""``--where`` filters select rows and can do nothing else: no other file read, none written, one statement."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.row_filter import select_ids
from catalog.store import CatalogError


@pytest.fixture()
def files(tmp_path):
    paths = []
    for i, labels in enumerate([[1, 7], [7, 3]]):
        path = tmp_path / f"shard-{i}.parquet"
        ids = [f"s{i}{j}" for j in range(len(labels))]
        pq.write_table(pa.table({"sample_id": ids, "label": labels, "prompt": [f"a {x}" for x in labels],
                                 "image": [b"png"] * len(labels)}), path)
        paths.append(str(path))
    return paths


def test_selects_the_matching_rows_across_files(files):
    assert select_ids(files, "label = 7") == {"s01", "s10"}
    assert select_ids(files, "prompt LIKE '%3' OR sample_id = 's00'") == {"s11", "s00"}
    assert select_ids(files, "label = 99") == set()
    assert select_ids([], "label = 7") == set()


@pytest.mark.parametrize("where, says", [
    ("", "empty"),
    ("   ", "empty"),
    ("label =", "bad --where"),
    ("no_such_column = 1", "no_such_column"),
    ("label = 7) OR (1 = 1", "bad --where"),  # breaks out of the parentheses: would match every row
    ("label = 7 LIMIT 0", "bad --where"),
    ("label = 7 --", "bad --where"),
    ("label = 7 /*", "bad --where"),
    ("(label = 7", "bad --where"),
    ("(label = 7) OR (prompt = 'a (3')", None),  # parentheses inside a string literal are fine
])
def test_malformed_filters_are_clear_errors(files, where, says):
    if says is None:
        assert select_ids(files, where) == {"s01", "s10"}
        return
    with pytest.raises(CatalogError, match=says):
        select_ids(files, where)


def test_a_filter_cannot_read_another_file(files, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n7\n")
    for where in [f"label IN (SELECT x FROM read_csv('{secret}'))",
                  f"label IN (SELECT label FROM read_parquet('{files[0]}'))",
                  f"(SELECT count(*) FROM read_text('{secret}')) > 0"]:
        with pytest.raises(CatalogError, match="disabled"):
            select_ids(files, where)


def test_a_filter_cannot_write_or_run_a_second_statement(files, tmp_path):
    out = tmp_path / "leak.csv"
    for where in [f"1 = 1); COPY (SELECT * FROM rows) TO '{out}'; SELECT (1",
                  "1 = 1); SET lock_configuration = false; SELECT (1"]:
        with pytest.raises(CatalogError, match="one expression"):
            select_ids(files, where)
    assert not out.exists()


@pytest.mark.parametrize("where", [
    "sample_id IN (SELECT content FROM read_text('.tmp/*'))",  # an oracle on the file's contents
    "label = 7 AND (SELECT count(*) FROM read_text('.tmp/secret.txt')) > 0",
    "sample_id IN (SELECT filename FROM glob('.tmp/*'))",
])
def test_a_filter_cannot_read_duckdb_s_default_temp_folder(files, tmp_path, monkeypatch, where):
    """DuckDB keeps ``./.tmp`` open even with external access off: the sandbox gets a private one instead."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "secret.txt").write_text("s01")
    with pytest.raises(CatalogError, match="Permission|disabled"):
        select_ids(files, where)
