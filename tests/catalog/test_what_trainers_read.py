"""What a trainer reads of a version is what was kept: every reader of ``files`` sees kept rows only.

``v.table()`` filters on status, so a split that wrote a blocked near-copy of
real data into a training shard would hide behind it; HF ``datasets``,
DuckDB, pyarrow and the streaming loader read ``v.files`` as they are.
"""

from __future__ import annotations

import duckdb
import pyarrow.dataset as ds
import pytest

from catalog import Catalog, open_version, samples_to_table
from synthgen.records import DUPLICATE, KEPT, LOW_QUALITY, REAL_COPY, Sample

STATUSES = [KEPT, DUPLICATE, REAL_COPY, LOW_QUALITY]


@pytest.fixture
def version(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    cat.create("mixed", "synthetic")
    samples = [Sample(sample_id=f"s{i}", origin="synthetic", status=STATUSES[i % 4], plan_index=i)
               for i in range(40)]
    cat.commit("mixed", cat.write_split("mixed", samples_to_table(samples)))
    return open_version(cat, "mixed")


def test_training_files_hold_kept_rows_only_for_every_reader(version, tmp_path):
    import datasets

    assert version.files and version.excluded_files
    by_duckdb = duckdb.sql(f"select distinct status from read_parquet({[str(f) for f in version.files]})").fetchall()
    assert by_duckdb == [(KEPT,)]
    assert set(ds.dataset(version.files).to_table(columns=["status"])["status"].to_pylist()) == {KEPT}
    hf = datasets.load_dataset("parquet", data_files=[str(f) for f in version.files], split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert set(hf["status"]) == {KEPT} and hf.num_rows == 10


def test_every_dropped_or_blocked_row_is_kept_with_its_evidence_outside_the_training_files(version):
    excluded = ds.dataset(version.excluded_files).to_table(columns=["status"])["status"].to_pylist()
    assert sorted(set(excluded)) == sorted({DUPLICATE, REAL_COPY, LOW_QUALITY}) and len(excluded) == 30
    assert version.manifest.rows_by_status == {s: 10 for s in STATUSES}
    assert version.table(["status"], status="all").num_rows == 40
