"""A gallery index follows the real sets its copies were guarded against: a takedown there is not left listed.

Blocked copies of an open real set are shown only while that set holds the real rows they copy
(``catalog.access.judge_sources``). The gallery index is built once per version, so it is named by
the real sets' state too: after a takedown of a copied real row, the app (same process, same cache)
no longer lists the copy of the row taken down, and says it withholds one row.
"""

from __future__ import annotations

import re

import pyarrow as pa
from starlette.testclient import TestClient

from catalog import Catalog, samples_to_table
from catalog.derive import takedown
from flows.ui.app import create_app
from flows.ui.config import UiConfig
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples


def _with(t: pa.Table, **columns) -> pa.Table:
    for column, values in columns.items():
        t = t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type))
    return t


def _tiles(html: str) -> set[str]:
    return set(re.findall(r'data-sample="([^"]+)"', html))


def test_copies_go_from_the_gallery_when_the_real_rows_they_copy_are_taken_down(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    cat.create("pub", "real")
    real = samples_to_table(make_samples(4, "real", dim=8), embedding_model="test-clip")
    cat.commit("pub", [cat.write_shard("pub", real)])
    copied = real["sample_id"].to_pylist()[:2]
    gen = _with(samples_to_table(make_samples(4, start=50, dim=8), embedding_model="test-clip"),
                status=[KEPT, KEPT, REAL_COPY, REAL_COPY], real_dataset=["pub"] * 4, real_nn_id=["x", "y", *copied],
                real_nn_similarity=[0.5, 0.5, 0.99, 0.99], real_threshold=[0.9] * 4)
    cat.create("gen", "synthetic")
    cat.commit("gen", cat.write_split("gen", gen))
    ids = gen["sample_id"].to_pylist()
    app = create_app(UiConfig(catalog=cat.root, cache=tmp_path / "cache", allow_restricted=False, warm_indexes=False))
    with TestClient(app) as client:
        page = client.get("/d/gen/1")
        assert _tiles(page.text) == set(ids) and 'id="withheld"' not in page.text  # beside the rows they copy
        takedown(cat, "pub", f"sample_id = '{copied[0]}'", "the owner withdrew this image")
        page = client.get("/d/gen/1")
        # The copy of the row taken down is withheld; the other copies a row `pub` still holds.
        assert _tiles(page.text) == {ids[0], ids[1], ids[3]}
        note = re.search(r'<p class="restricted" id="withheld">(.*?)</p>', page.text, re.S)
        assert note and "1 row" in note.group(1)
        assert client.get(f"/image/gen/{ids[2]}").status_code == 404
        assert client.get(f"/image/gen/{ids[3]}").status_code == 200  # as its gallery says
    # The index of the earlier state is gone: one file per version and access, not one per real-set commit.
    assert len(list((tmp_path / "cache" / "index" / "gen").glob("*.duckdb"))) == 1
