from catalog import Catalog, audit, samples_to_table
from tests.conftest import make_samples


def test_audit_finds_a_sample_and_every_version_holding_it(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    for start in (0, 10, 20):
        with cat.lock("ds"):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(10, start=start)))])
    [rec] = audit(cat, "s00012")
    assert rec.dataset == "ds" and rec.versions == [2, 3]
    assert rec.row["plan_index"] == 12 and rec.row["origin"] == "synthetic"
    assert "image" not in rec.row and "embedding" not in rec.row
    assert audit(cat, "missing") == []


def test_image_of_reads_an_audited_rows_image_from_its_shard(tmp_path):
    from catalog.audit import image_of

    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    samples = make_samples(5)
    with cat.lock("ds"):
        cat.commit("ds", [cat.write_shard("ds", samples_to_table(samples))])
    [rec] = audit(cat, "s00003")
    assert image_of(rec) == samples[3].png and image_of(rec) != samples[2].png
    rec.sample_id = "gone"
    assert image_of(rec) is None
