import pytest

from catalog import Catalog, CatalogError, open_version, samples_to_table
from catalog.derive import mix, takedown
from tests.conftest import make_samples


@pytest.fixture
def cat(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("synth", "synthetic")
    cat.create("real", "real", restricted=True)
    for name, origin, n in (("synth", "synthetic", 30), ("real", "real", 10)):
        with cat.lock(name):
            shards = [cat.write_shard(name, samples_to_table(make_samples(n // 2, origin, start=s)))
                      for s in (0, n // 2)]
            cat.commit(name, shards)
    return cat


def test_takedown_makes_a_new_version_and_keeps_the_old(cat):
    before = open_version(cat, "synth@1").table()
    m = takedown(cat, "synth", "sample_id IN ('s00003', 's00004')", "user request #12")
    assert m.version == 2 and m.rows == 28 and m.prov["wasDerivedFrom"] == "synth@1"
    assert m.prov["wasGeneratedBy"]["removed"] == 2
    ids = set(open_version(cat, "synth@2").table()["sample_id"].to_pylist())
    assert "s00003" not in ids and "s00020" in ids
    assert open_version(cat, "synth@1").table().equals(before)  # time travel intact
    assert m.shards[0].sha256 == cat.manifest("synth", 1).shards[1].sha256  # untouched shard reused
    with pytest.raises(CatalogError, match="no rows match"):
        takedown(cat, "synth", "label = 99", "nothing")
    with pytest.raises(CatalogError, match="bad --where"):
        takedown(cat, "synth", "no_such_column = 1", "typo")


def test_mix_at_ratio_labels_every_row_and_guards_restricted(cat):
    with pytest.raises(CatalogError, match="restricted"):
        mix(cat, "synth@1", "real@1", 0.5, "train-mix")
    m = mix(cat, "synth@1", "real@1", 0.5, "train-mix", allow_restricted=True)
    t = open_version(cat, "train-mix", allow_restricted=True).table()
    origins = t["origin"].to_pylist()
    assert origins.count("real") == 10 and origins.count("synthetic") == 10
    assert m.prov["wasDerivedFrom"] == ["synth@1", "real@1"]
    assert cat.info("train-mix")["restricted"] is True
    again = mix(cat, "synth@1", "real@1", 0.5, "train-mix-2", allow_restricted=True)
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in m.shards]  # deterministic choice


def test_takedown_needs_a_reason(cat):
    for reason in ("", "   "):
        with pytest.raises(CatalogError, match="non-empty --reason"):
            takedown(cat, "synth", "label = 1", reason)
    assert [m.version for m in cat.versions("synth")] == [1]


def test_mix_at_share_zero_is_the_real_rows_only(cat):
    mix(cat, "synth@1", "real@1", 0.0, "real-only", allow_restricted=True)
    t = open_version(cat, "real-only", allow_restricted=True).table()
    assert t.num_rows == 10 and set(t["origin"].to_pylist()) == {"real"}
    for share in (1.0, 1.5, -0.1, float("nan")):
        with pytest.raises(CatalogError, match=r"synthetic share \(--ratio\) must be in \[0, 1\)"):
            mix(cat, "synth@1", "real@1", share, "bad-mix", allow_restricted=True)


def test_diff_shows_rows_and_spec_changes(cat):
    from catalog.diff import diff

    takedown(cat, "synth", "sample_id = 's00007'", "test")
    d = diff(cat, "synth@1", "synth@2")
    assert d.removed == ["s00007"] and d.added == []


def test_sql_query_views_per_dataset_and_version(cat):
    from catalog.query import query

    takedown(cat, "synth", "label = 0", "drop class 0")
    t = query(cat, "SELECT count(*) AS n FROM synth")
    assert t["n"][0].as_py() == 20
    t = query(cat, "SELECT count(*) AS n FROM synth_v1 WHERE origin = 'synthetic'")
    assert t["n"][0].as_py() == 30
    with pytest.raises(CatalogError, match="views: "):
        query(cat, "SELECT * FROM nope")


def test_card_summarises_a_version(cat):
    from catalog.card import render_card, write_card

    text = render_card(cat, "synth@1")
    assert "# synth@1" in text and "| synthetic | kept | 30 |" in text and "hash chain head" in text
    assert write_card(cat, "real@1").read_text().startswith("# real@1")


def test_card_has_a_sample_grid_per_class(cat):
    from PIL import Image

    from catalog.card import write_card

    card = write_card(cat, "synth@1")
    grids = sorted((card.parent / "grids").glob("*.png"))
    labels = {r["label_name"] for r in open_version(cat, "synth@1").table(["label_name"]).to_pylist()}
    assert [g.stem for g in grids] == sorted(labels)
    text = card.read_text()
    for g in grids:
        assert f"](grids/{g.name})" in text
        assert Image.open(g).size[0] > 16  # a real contact sheet, not an empty placeholder
