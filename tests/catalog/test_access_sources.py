"""Blocked copies are shown only beside the real rows they copy (``catalog.access.judge_sources``).

The withholding used to trust a name: any open dataset called like the real
set counted as it. A pulled synthetic dataset, whose restricted real set
stayed behind, then gave up its copies to anyone who ingested some other
images under that name.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import Catalog, RestrictedError, open_version, samples_to_table
from catalog.access import judge_sources, missing, row_key
from catalog.derive import takedown
from catalog.id_index import version_lacks
from catalog.query import query
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples


def real_set(cat: Catalog, name: str, restricted: bool, start: int = 0) -> list[str]:
    """A real dataset of 4 rows; their ids."""
    cat.create(name, "real", restricted=restricted)
    t = samples_to_table(make_samples(4, "real", start=start, dim=8), embedding_model="test-clip")
    cat.commit(name, [cat.write_shard(name, t)])
    return t["sample_id"].to_pylist()


def copies_of(cat: Catalog, name: str, real: str, matched: list[str]) -> None:
    """An open synthetic dataset: 2 kept rows, 2 rows the guard blocked as copies of ``matched`` rows of ``real``."""
    t = samples_to_table(make_samples(4, start=50, dim=8), embedding_model="test-clip")
    for column, values in (("status", [KEPT, KEPT, REAL_COPY, REAL_COPY]), ("real_dataset", [real] * 4),
                           ("real_nn_id", ["x", "y", *matched]), ("real_nn_similarity", [0.5, 0.5, 0.99, 0.99]),
                           ("real_threshold", [0.9] * 4)):
        i = t.schema.get_field_index(column)
        t = t.set_column(i, column, pa.array(values, t.schema.field(column).type))
    cat.create(name, "synthetic")
    cat.commit(name, cat.write_split(name, t))


def test_copies_of_an_open_real_set_that_holds_what_they_copy_are_shown(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "pub", restricted=False)
    copies_of(cat, "gen", "pub", ids[:2])
    assert open_version(cat, "gen").table(["status"], status="all").num_rows == 4
    assert query(cat, "SELECT count(*) AS n FROM gen_all")["n"].to_pylist() == [4]


def test_an_open_dataset_under_the_real_sets_name_does_not_release_its_copies(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "private", restricted=True)
    copies_of(cat, "gen", "private", ids[:2])
    # Elsewhere the restricted set is gone (a pull of `gen` alone, a catalog rebuilt), and someone makes an
    # open real dataset under its name from other images.
    (tmp_path / "catalog" / "private").rename(tmp_path / "private-elsewhere")
    impostor = real_set(cat, "private", restricted=False, start=20)
    assert not set(impostor) & set(ids[:2])
    v = open_version(cat, "gen")
    t = v.table(["status"], status="all")
    assert sorted(set(t.column("status").to_pylist())) == [KEPT]  # the copies are withheld
    judged = judge_sources(cat, open_version(cat, "gen", allow_restricted=True).table(status="all"))
    assert "private" in judged.open  # open, but not holding what was copied
    assert {row_key("private", i) for i in ids[:2]} <= set(judged.unheld)
    assert v.images(["s00052", "s00053"]) == {}
    assert query(cat, "SELECT count(*) AS n FROM gen_all")["n"].to_pylist() == [2]
    with pytest.raises(RestrictedError, match="blocked copies"):
        v.excluded_files  # noqa: B018 - the shards holding them (what export and push hand out whole)


def test_the_id_index_answers_as_a_scan_does(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "pub", restricted=False)
    head = cat.head("pub")
    cases = [set(ids[:2]), set(ids), {ids[0], "s09999"}, {"s09999"}]
    want = [set(), set(), {"s09999"}, {"s09999"}]
    assert [version_lacks(cat, "pub", head, c) for c in cases] == want
    assert [missing(cat, "pub", c) for c in cases] == want
    # With no index to trust, the same answers from a scan.
    ids_json = cat.version_dir("pub", head) / "ids.json"
    ids_json.write_text("{}")
    assert version_lacks(cat, "pub", head, set(ids)) is None
    assert [missing(cat, "pub", c) for c in cases] == want


def test_a_forged_id_index_cannot_make_the_real_set_hold_a_row_it_does_not(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "pub", restricted=False)
    copies_of(cat, "gen", "pub", ["s09998", "s09999"])  # matched to rows `pub` does not hold
    head = cat.head("pub")
    shard = cat.manifest("pub", head).shards[0].sha256
    # Someone who can write the catalog's folder indexes the copies' ids onto rows of the real set's shard.
    forged = pa.table({"sample_id": ["s09998", "s09999"], "shard": pa.array([0, 0], pa.int32()),
                       "row": pa.array([0, 1], pa.int32())}).replace_schema_metadata(
        {b"synthgen.shards": json.dumps([shard]).encode()})
    buf = pa.BufferOutputStream()
    pq.write_table(forged, buf)
    data = buf.getvalue().to_pybytes()
    digest = hashlib.sha256(data).hexdigest()
    (cat.derived_path("pub") / "ids" / f"{digest}.parquet").write_bytes(data)
    (cat.version_dir("pub", head) / "ids.json").write_text(json.dumps({
        "format": 1, "dataset": "pub", "version": head, "manifest_sha256": cat.manifest_sha256("pub", head),
        "segments": [{"file": f"ids/{digest}.parquet", "sha256": digest, "rows": 2}]}))
    assert version_lacks(cat, "pub", head, {"s09998"}) == {"s09998"}  # found in the index, not in the shard
    assert open_version(cat, "gen").table(["status"], status="all").num_rows == 2  # the copies stay withheld
    assert version_lacks(cat, "pub", head, {ids[0]}) == {ids[0]}  # the forgery hides rows: the safe side


def test_each_copy_is_judged_by_the_real_row_it_copies_alone_or_with_its_version(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "pub", restricted=False)
    copies_of(cat, "gen", "pub", ids[:2])
    takedown(cat, "pub", f"sample_id = '{ids[0]}'", "the owner withdrew it")
    v = open_version(cat, "gen")
    # s00052 copies the row taken down: withheld; s00053 copies a row `pub` still holds: shown, whether
    # read with its version, alone (a web page, an audit) or through SQL.
    assert v.table(["sample_id"], status="all")["sample_id"].to_pylist() == ["s00050", "s00051", "s00053"]
    assert v.images(["s00052"]) == {} and set(v.images(["s00053"])) == {"s00053"}
    assert query(cat, "SELECT sample_id FROM gen_all ORDER BY 1")["sample_id"].to_pylist() == [
        "s00050", "s00051", "s00053"]


def test_a_copy_with_no_matched_row_recorded_is_withheld_beside_an_open_set(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    ids = real_set(cat, "pub", restricted=False)
    copies_of(cat, "gen", "pub", [ids[0], None])
    assert open_version(cat, "gen").table(["sample_id"], status="all")["sample_id"].to_pylist() == [
        "s00050", "s00051", "s00052"]


def test_a_real_row_is_named_by_its_set_and_id_so_another_sets_missing_id_withholds_nothing_else(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    pa_ids = real_set(cat, "pa", restricted=False)
    real_set(cat, "pb", restricted=False, start=20)  # holds other ids
    t = samples_to_table(make_samples(2, start=50, dim=8), embedding_model="test-clip")
    for column, values in (("status", [REAL_COPY, REAL_COPY]), ("real_dataset", ["pa", "pb"]),
                           ("real_nn_id", [pa_ids[0], pa_ids[0]]), ("real_nn_similarity", [0.99, 0.99]),
                           ("real_threshold", [0.9, 0.9])):
        t = t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type))
    cat.create("gen", "synthetic")
    cat.commit("gen", cat.write_split("gen", t))
    v = open_version(cat, "gen")
    # s00050 copies pa's row, which pa holds; s00051 names the same id in pb, which pb does not hold.
    assert v.table(["sample_id"], status="all")["sample_id"].to_pylist() == ["s00050"]
    assert set(v.images(["s00050", "s00051"])) == {"s00050"}
    assert query(cat, "SELECT sample_id FROM gen_all")["sample_id"].to_pylist() == ["s00050"]
