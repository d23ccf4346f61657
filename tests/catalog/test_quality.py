"""A version's quality report from the embeddings stored in its shards (and its reference's)."""

import numpy as np
import pytest

from catalog import Catalog, CatalogError, open_version, samples_to_table
from catalog.card import render_card, write_card
from catalog.quality import stored_embeddings, version_quality
from synthgen.quality import QualityConfig, score_groups
from synthgen.utility import utility
from tests.conftest import make_samples


def _commit(cat, name, origin, samples, model="clip@1", job=None, shards=1):
    if not cat.exists(name):
        cat.create(name, origin)
    step = -(-len(samples) // shards)
    with cat.lock(name):
        cat.commit(name, [cat.write_shard(name, samples_to_table(samples[i : i + step], model))
                          for i in range(0, len(samples), step)], job=job)


@pytest.fixture
def cat(tmp_path):
    cat = Catalog(tmp_path)
    _commit(cat, "real", "real", make_samples(45, "real", seed=1), shards=2)
    _commit(cat, "synth", "synthetic", make_samples(30, seed=2), job={"dedup": {"real_dataset": "real"}}, shards=3)
    return cat


@pytest.mark.parametrize("cfg", [QualityConfig(k=3), QualityConfig(k=3, max_samples=20, max_per_group=7, seed=3)])
def test_report_uses_stored_embeddings_of_both_sets(cat, cfg):
    r = version_quality(cat, "synth@1", config=cfg)
    assert (r.ref, r.reference, r.embedding_model) == ("synth@1", "real@1", "clip@1")
    syn = open_version(cat, "synth@1").table(["embedding", "label_name"])
    real = open_version(cat, "real@1").table(["embedding", "label_name"])
    emb = lambda t: np.array(t["embedding"].to_pylist(), np.float32)  # noqa: E731
    overall, groups = score_groups(emb(syn), syn["label_name"].to_pylist(), emb(real), real["label_name"].to_pylist(),
                                   cfg)
    assert r.overall == overall and r.groups == groups  # reading only the drawn rows changes nothing
    # The training-utility figure: the linear probe on the same stored embeddings, read in the same pass.
    assert r.utility == utility(emb(syn), syn["label_name"].to_pylist(), emb(real), real["label_name"].to_pylist(), cfg)
    assert r.utility.classes == 3 and r.utility.test_rows == 9 and r.utility.ratio is not None
    assert r.metrics()["quality.tstr_ratio"] == r.utility.ratio
    assert [g.group for g in r.groups] == ["c0", "c1", "c2"] and r.groups[0].real_rows == 15
    assert r.overall.synthetic_sampled == min(30, cfg.max_samples) and r.groups[0].synthetic_sampled == min(10, cfg.max_per_group)
    assert r.overall.coverage is not None and r.overall.diversity_ratio is not None


def test_no_reference_gives_internal_diversity(cat):
    _commit(cat, "solo", "synthetic", make_samples(12, seed=3))
    r = version_quality(cat, "solo")
    assert r.reference is None and r.overall.coverage is None and r.overall.nn_distance_synthetic > 0
    assert "no real reference" in r.to_markdown()


def test_other_embedder_is_not_compared(cat):
    _commit(cat, "real2", "real", make_samples(20, "real", seed=4), model="other-clip")
    r = version_quality(cat, "synth@1", real="real2")
    assert r.reference is None and "other-clip" in r.note and r.overall.precision is None


def test_bad_references_are_clear_errors(cat):
    with pytest.raises(CatalogError, match="not real"):
        version_quality(cat, "synth@1", real="synth@1")
    with pytest.raises(CatalogError):
        version_quality(cat, "nope@1")


def test_rows_without_embeddings_are_an_error(cat):
    samples = make_samples(4, seed=5)
    for s in samples:
        s.embedding = None
    _commit(cat, "noemb", "synthetic", samples)
    with pytest.raises(CatalogError, match="no stored embedding"):
        stored_embeddings(open_version(cat, "noemb"), np.arange(2))
    with pytest.raises(CatalogError, match="no stored embedding"):
        version_quality(cat, "noemb")


def test_card_shows_the_report_table_and_plot(cat):
    text = render_card(cat, "synth@1")
    assert "## Quality against the real data" in text and "| **all** | 30 | 45 | 30 |" in text
    u = version_quality(cat, "synth@1").utility
    assert "Training utility (linear probe" in text and f"| **{u.ratio:.3f}** | {u.tstr:.3f} | {u.trtr:.3f} |" in text
    path = write_card(cat, "synth@1")
    assert (path.parent / "quality.png").is_file() and "![quality per class](quality.png)" in path.read_text()


def test_card_of_a_version_without_kept_rows_says_why(cat):
    samples = make_samples(4, seed=6)
    for s in samples:
        s.status = "dropped_duplicate"
    _commit(cat, "empty", "synthetic", samples)
    assert "## Quality\n\n- not assessed: empty@1 has no kept rows to assess" in render_card(cat, "empty@1")
