"""Restricted means restricted for every reader of the catalog, while dedup and the guard still use it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import Catalog, CatalogError, RestrictedError, audit, embeddings_of, load, open_version, samples_to_table
from catalog.guard import pixel_guard
from catalog.publish import pull, push
from catalog.query import query
from catalog.remote import RemoteCatalog
from catalog.vector_index import version_index
from synthgen.dedup import decide
from synthgen.imaging import decode
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples


@pytest.fixture
def cat(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    for name, origin, restricted in (("private", "real", True), ("open", "synthetic", False)):
        cat.create(name, origin, restricted=restricted)
        with cat.lock(name):
            table = samples_to_table(make_samples(6, origin, dim=8), embedding_model="test-clip")
            cat.commit(name, [cat.write_shard(name, table)])
    return cat


READERS = {
    "table": lambda v: v.table(),
    "to_pandas": lambda v: v.to_pandas(),
    "images": lambda v: v.images(["r00000"]),
    "files": lambda v: v.files,
    "to_torch": lambda v: v.to_torch(),
    "to_torch_iterable": lambda v: list(v.to_torch_iterable()),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_of_a_version_needs_allow_restricted(cat, reader):
    with pytest.raises(RestrictedError, match="private is restricted"):
        READERS[reader](open_version(cat, "private"))
    assert READERS[reader](open_version(cat, "private", allow_restricted=True)) is not None
    assert READERS[reader](open_version(cat, "open")) is not None  # other datasets are unaffected


def test_load_needs_allow_restricted_for_any_restricted_ref(cat):
    with pytest.raises(RestrictedError):
        load(cat, ["open", "private"])
    assert load(cat, ["open", "private"], allow_restricted=True).num_rows == 12
    assert load(cat, "open").num_rows == 6


def test_search_of_a_restricted_version_needs_the_flag(cat):
    from catalog.search import search

    query = open_version(cat, "private", allow_restricted=True).table(["embedding"])["embedding"][0].as_py()
    with pytest.raises(RestrictedError):
        search(open_version(cat, "private"), np.asarray(query, np.float32), k=1)
    assert search(open_version(cat, "private", allow_restricted=True), np.asarray(query, np.float32), k=1)[0][0] == "r00000"


def test_audit_withholds_a_restricted_row(cat):
    with pytest.raises(RestrictedError):
        audit(cat, "r00001")
    assert audit(cat, "r00001", allow_restricted=True)[0].dataset == "private"
    assert audit(cat, "s00001")[0].dataset == "open"


def test_dedup_and_the_guard_use_a_restricted_set_without_the_flag(cat):
    v = open_version(cat, "private")
    # The test plays the data owner: it may read the embeddings to make a copy of one.
    ids, emb, _ = embeddings_of(open_version(cat, "private", allow_restricted=True))
    assert len(ids) == 6 and emb.shape == (6, 8)
    # The real set's persisted index in the rows' space, as a job's dedup loads it.
    real = version_index(cat, "private", "test-clip")
    copy = emb[2:3]  # a synthetic sample at exactly a restricted real sample's embedding
    d = decide(["s"], copy, threshold=0.97, real_threshold=0.98, real=real)
    assert d.status == [REAL_COPY] and d.real_nn_id == [ids[2]]
    # The pixel guard over the restricted images: a copy of one is found, at distance 0.
    images = open_version(cat, "private", allow_restricted=True).images(["r00004"])
    dist, nn = pixel_guard(v).nearest([decode(images["r00004"])])
    assert nn == ["r00004"] and dist[0] == pytest.approx(0.0, abs=1e-5)


def test_embeddings_indexes_and_thumbnails_of_a_restricted_set_are_not_handed_out(cat):
    """They are derived from the images: answers (nearest) yes, the vectors and thumbnails themselves no."""
    v = open_version(cat, "private")
    with pytest.raises(RestrictedError, match="private is restricted"):
        embeddings_of(v)
    real = version_index(cat, "private", "test-clip")
    guard = pixel_guard(v)
    for leak in (lambda: real.parts, lambda: real.ids, lambda: guard.thumbs, lambda: guard.index, lambda: guard.ids):
        with pytest.raises(RestrictedError, match="private is restricted"):
            leak()
    allowed = open_version(cat, "private", allow_restricted=True)
    assert pixel_guard(allowed).thumbs.shape[0] == 6
    assert len(version_index(cat, "private", "test-clip", allow_restricted=True).ids) == 6


def test_query_has_no_views_of_restricted_datasets_without_the_flag(cat):
    assert query(cat, "SELECT count(*) AS n FROM open")["n"].to_pylist() == [6]
    with pytest.raises(CatalogError, match="restricted \\(pass --allow-restricted\\): private"):
        query(cat, "SELECT * FROM private")
    assert query(cat, "SELECT count(*) AS n FROM private", allow_restricted=True)["n"].to_pylist() == [6]


def test_query_cannot_read_restricted_shards_by_path(cat):
    shard = str(cat.path("private") / open_version(cat, "private").manifest.shards[0].file)
    with pytest.raises(CatalogError, match="Permission"):
        query(cat, f"SELECT * FROM read_parquet('{shard}')")


@pytest.mark.parametrize("sql", [
    "COPY (SELECT * FROM open) TO '{out}'",
    "COPY (SELECT * FROM open) TO '{out}' (FORMAT parquet, USE_TMP_FILE false)",
    "COPY (SELECT 1 AS x) TO '{shard}' (FORMAT parquet, USE_TMP_FILE false)",
    "SELECT * FROM read_csv('{outside}')",
    "SELECT * FROM read_parquet('{shard}')",
    "ATTACH '{out}.db' AS other",
    "SET enable_external_access = true",
    "INSTALL httpfs",
])
def test_query_cannot_write_files_or_read_outside_the_catalog(cat, tmp_path, sql):
    shard = cat.path("open") / open_version(cat, "open").manifest.shards[0].file
    before = shard.read_bytes()
    outside = tmp_path / "outside.csv"
    outside.write_text("a,b\n1,2\n")
    out = tmp_path / "copied.parquet"
    with pytest.raises(CatalogError, match="query failed"):
        query(cat, sql.format(out=out, shard=shard, outside=outside))
    assert not out.exists() and not (tmp_path / "copied.parquet.db").exists()
    assert shard.read_bytes() == before
    assert query(cat, "SELECT count(*) AS n FROM open_v1")["n"].to_pylist() == [6]  # the views still work


def test_push_and_remote_reads_need_the_flag(cat, tmp_path):
    url = str(tmp_path / "shared")
    with pytest.raises(RestrictedError):
        push(cat, "private", url)
    assert not (tmp_path / "shared" / "private").exists()  # refused before anything was written
    push(cat, "private", url, allow_restricted=True)
    remote = RemoteCatalog(url)
    with pytest.raises(RestrictedError):
        remote.open("private").table()
    assert remote.open("private", allow_restricted=True).table().num_rows == 6


def test_export_of_a_restricted_version_needs_the_flag_and_writes_nothing(cat, tmp_path):
    from flows.outputs.export import export_parquet, export_pngs

    dest = tmp_path / "out.parquet"
    with pytest.raises(RestrictedError):
        export_parquet(open_version(cat, "private"), dest)
    with pytest.raises(RestrictedError):
        export_pngs(open_version(cat, "private"), tmp_path / "pngs")
    assert not dest.exists() and not (tmp_path / "pngs").exists()
    assert export_parquet(open_version(cat, "private", allow_restricted=True), dest) == 6
    assert pq.read_table(dest).num_rows == 6


def test_card_of_a_restricted_version_has_counts_but_no_images(cat):
    from catalog.card import write_card

    card = write_card(cat, "private@1")
    assert "(restricted)" in card.read_text() and "| real | kept | 6 |" in card.read_text()
    assert not list(card.parent.glob("grids/*.png"))
    assert list(write_card(cat, "open@1").parent.glob("grids/*.png"))  # an open dataset's card shows samples


def test_a_pull_never_lowers_a_restricted_dataset_to_an_unrestricted_local_one(cat, tmp_path):
    url = str(tmp_path / "shared")
    push(cat, "private", url, allow_restricted=True)
    local = Catalog(tmp_path / "local")
    local.create("private", "real")  # unrestricted, empty
    with pytest.raises(CatalogError, match="restricted"):
        pull(url, "private", local)
    assert local.head("private") is None
    fresh = Catalog(tmp_path / "fresh")
    pull(url, "private", fresh)
    with pytest.raises(RestrictedError):
        open_version(fresh, "private").table()


def blocked_copies(cat) -> None:
    """A synthetic dataset `gen`: 2 kept rows, 2 rows the guard blocked as copies of `private`'s images."""
    real = open_version(cat, "private", allow_restricted=True).table(["image"]).slice(0, 2)["image"].to_pylist()
    t = samples_to_table(make_samples(4, start=50, dim=8), embedding_model="test-clip")
    t = t.set_column(t.schema.get_field_index("status"), "status", pa.array([KEPT, KEPT, REAL_COPY, REAL_COPY]))
    t = t.set_column(t.schema.get_field_index("real_dataset"), "real_dataset", pa.array(["private"] * 4))
    t = t.set_column(t.schema.get_field_index("image"), "image",
                     pa.array(t["image"].to_pylist()[:2] + real, t.schema.field("image").type))
    cat.create("gen", "synthetic")
    cat.commit("gen", cat.write_split("gen", t))


def test_rows_that_copy_a_restricted_set_are_restricted_too(cat, tmp_path):
    blocked_copies(cat)
    v = open_version(cat, "gen")
    assert v.table(status="all")["status"].to_pylist() == [KEPT, KEPT]  # the copies are left out
    assert v.images(["s00052", "s00050"]).keys() == {"s00050"}
    ids, _, _ = embeddings_of(v, status="all")
    assert ids == ["s00050", "s00051"]
    for paths in (lambda: v.all_files, lambda: v.excluded_files, lambda: v.files_for("all")):
        with pytest.raises(RestrictedError, match="blocked copies"):
            paths()
    assert v.files  # the training shard holds kept rows only
    assert query(cat, "SELECT count(*) AS n FROM gen_all")["n"].to_pylist() == [2]
    with pytest.raises(RestrictedError, match="blocked copies"):
        push(cat, "gen", str(tmp_path / "shared"))
    allowed = open_version(cat, "gen", allow_restricted=True)
    assert allowed.table(status="all").num_rows == 4 and len(allowed.all_files) == 2
    assert query(cat, "SELECT count(*) AS n FROM gen_all", allow_restricted=True)["n"].to_pylist() == [4]
    for sid in ("s00052", "s99999"):  # a blocked copy is answered as an id the catalog does not hold
        with pytest.raises(RestrictedError, match="not searched \\(private\\)"):
            audit(cat, sid)
    assert audit(cat, "s00052", allow_restricted=True)[0].dataset == "gen"


def test_a_trace_never_matches_a_restricted_row_without_the_flag(cat):
    from catalog.trace import by_embedding, by_pixel_hash

    blocked_copies(cat)
    row = open_version(cat, "private", allow_restricted=True).table(["image_sha256", "embedding"]).to_pylist()[0]
    # `open` holds the same pixels (same seed); neither the restricted row nor its blocked copy is named
    assert {m.dataset for m in by_pixel_hash(cat, row["image_sha256"])} == {"open"}
    assert {m.dataset for m in by_pixel_hash(cat, row["image_sha256"], allow_restricted=True)} == {"open", "private"}
    query_vec = np.asarray(row["embedding"], np.float32)
    found = by_embedding(cat, query_vec, "test-clip")
    assert found is None or found.dataset != "private" and found.sample_id not in ("s00052", "s00053")
