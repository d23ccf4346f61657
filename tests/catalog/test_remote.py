"""Reading a shared catalog: a published version's blocked copies of restricted real data are withheld as locally."""

from __future__ import annotations

import pyarrow as pa
import pytest

from catalog import Catalog, access, open_version, samples_to_table
from catalog.access import ROWS_PER_LOOKUP
from catalog.publish import push
from catalog.remote import RemoteCatalog
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples


def guarded_copies(cat: Catalog, name: str, real_set: str) -> None:
    """A synthetic dataset ``name``: 2 kept rows, 2 rows the guard blocked as copies of ``real_set``'s first 2 images."""
    real = open_version(cat, real_set, allow_restricted=True).table(["sample_id", "image"]).slice(0, 2)
    t = samples_to_table(make_samples(4, start=50, dim=8), embedding_model="test-clip")
    columns = {"status": [KEPT, KEPT, REAL_COPY, REAL_COPY], "real_dataset": [real_set] * 4,
               "real_nn_id": [None, None, *real["sample_id"].to_pylist()],
               "image": t["image"].to_pylist()[:2] + real["image"].to_pylist()}
    for column, values in columns.items():
        t = t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type))
    cat.create(name, "synthetic")
    cat.commit(name, cat.write_split(name, t))


def published_copies(root, real_too: bool = True) -> tuple[Catalog, str]:
    """The data owner's catalog under ``root`` and the shared one it pushed to (with the flag): `private`
    (restricted real, only when ``real_too``), `public` (open real), `gen` (2 blocked copies of `private`) and
    `gen_public` (2 blocked copies of `public`)."""
    cat = Catalog(root / "owner")
    for name, restricted in (("private", True), ("public", False)):
        cat.create(name, "real", restricted=restricted)
        cat.commit(name, [cat.write_shard(name, samples_to_table(make_samples(6, "real", dim=8, seed=restricted)))])
    guarded_copies(cat, "gen", "private")
    guarded_copies(cat, "gen_public", "public")
    url = str(root / "shared")
    for name in ("private", "public", "gen", "gen_public") if real_too else ("public", "gen", "gen_public"):
        push(cat, name, url, allow_restricted=True)
    return cat, url


def image_bytes(table: pa.Table) -> set[bytes]:
    return {i["bytes"] for i in table["image"].to_pylist()}


@pytest.mark.parametrize("real_too", [True, False], ids=["real-set-published", "real-set-not-published"])
def test_remote_reads_withhold_blocked_copies_of_restricted_data(tmp_path, real_too):
    cat, url = published_copies(tmp_path, real_too)
    secret = image_bytes(open_version(cat, "private", allow_restricted=True).table(["image"]))
    v = RemoteCatalog(url).open("gen")
    assert v.table(status="all")["status"].to_pylist() == [KEPT, KEPT]  # as open_version(...).table leaves them out
    blocked = v.table(["sample_id", "image"], status=REAL_COPY)
    assert blocked.num_rows == 0 and blocked.column_names == ["sample_id", "image"]
    assert not image_bytes(v.table(["image"], status="all")) & secret
    assert v.table().num_rows == 2 and list(v.withheld_shards().values()) == [["s00052", "s00053"]]
    allowed = RemoteCatalog(url).open("gen", allow_restricted=True)
    copies = image_bytes(allowed.table(["image"], status=REAL_COPY))
    assert allowed.table(status="all").num_rows == 4 and len(copies) == 2 and copies <= secret
    assert allowed.withheld_shards() == {}


@pytest.mark.parametrize("rows_per_lookup", [ROWS_PER_LOOKUP, 1], ids=["scanned", "as-for-a-large-real-set"])
def test_copies_of_a_real_set_open_in_the_shared_catalog_are_ordinary_excluded_rows(tmp_path, monkeypatch,
                                                                                     rows_per_lookup):
    # A local catalog looks few ids of a large real set up in its id index; a shared catalog keeps none and scans.
    monkeypatch.setattr(access, "ROWS_PER_LOOKUP", rows_per_lookup)
    _, url = published_copies(tmp_path)
    v = RemoteCatalog(url).open("gen_public")
    assert v.table(status="all").num_rows == 4 and v.withheld_shards() == {}


def test_a_shared_dataset_json_edited_to_open_the_real_set_opens_none_of_its_copies(tmp_path):
    # dataset.json is not sealed; the head manifest's flag is: an edit on the store releases nothing.
    _, url = published_copies(tmp_path)
    info = tmp_path / "shared" / "private" / "dataset.json"
    info.write_text(info.read_text().replace('"restricted": true', '"restricted": false'))
    assert not RemoteCatalog(url).info("private")["restricted"]  # the edit took
    assert RemoteCatalog(url).open("gen").table(status="all")["status"].to_pylist() == [KEPT, KEPT]
