"""Quality scores against the `prdc` package, scipy and direct numpy on small fixed sets."""

import json

import numpy as np
import pytest
import scipy.linalg
from prdc import compute_prdc

from synthgen import quality
from synthgen.quality import (
    QualityConfig, frechet_distance, knn_radii, mean_nn_distance, plan_draws, prdc, score_groups, score_set,
)
from synthgen.quality_report import QualityReport, side_by_side


@pytest.fixture
def sets():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(80, 6)).astype(np.float32)
    fake = (rng.normal(size=(60, 6)) * 0.6 + 0.8).astype(np.float32)
    return real, fake


def brute_prdc(real, fake, k):
    """Straight from the papers' definitions, on full distance matrices."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=2)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=2)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=2)
    r_rad = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
    f_rad = np.sort(d_ff, axis=1)[:, k]
    return {
        "precision": np.mean([any(d_rf[i, j] < r_rad[i] for i in range(len(real))) for j in range(len(fake))]),
        "recall": np.mean([any(d_rf[i, j] < f_rad[j] for j in range(len(fake))) for i in range(len(real))]),
        "density": np.mean([sum(d_rf[i, j] < r_rad[i] for i in range(len(real))) for j in range(len(fake))]) / k,
        "coverage": np.mean([d_rf[i].min() < r_rad[i] for i in range(len(real))]),
    }


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_the_prdc_package_and_brute_force(sets, k, capsys):
    real, fake = sets
    ours = prdc(real, fake, k)
    theirs = compute_prdc(real, fake, k)
    brute = brute_prdc(real.astype(np.float64), fake.astype(np.float64), k)
    for key in ("precision", "recall", "density", "coverage"):
        assert ours[key] == pytest.approx(float(theirs[key]), abs=1e-12), key
        assert ours[key] == pytest.approx(brute[key], abs=1e-12), key
    assert 0 < ours["precision"] < 1 and 0 < ours["coverage"] < 1  # the sets overlap only in part


def test_prdc_on_a_hand_computed_case():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.1], [10.0]])
    # real radii (k=1) are all 1; fake radii are both 9.9
    assert prdc(real, fake, 1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def test_distance_blocks_do_not_change_results(sets, monkeypatch):
    real, fake = sets
    whole, radii = prdc(real, fake, 4), knn_radii(real, 4)
    monkeypatch.setattr(quality, "_CHUNK", 7)  # several blocks, the last one short
    assert prdc(real, fake, 4) == whole
    np.testing.assert_allclose(knn_radii(real, 4), radii)


def test_too_few_rows_for_k_is_an_error():
    with pytest.raises(ValueError, match="more than k=5"):
        knn_radii(np.zeros((5, 3)), 5)


def test_frechet_distance_matches_scipy_sqrtm(sets):
    real, fake = sets
    a, b = real.astype(np.float64), fake.astype(np.float64)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s_a @ s_b).real  # the pytorch-fid formula
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * covmean)
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_shifted_copy_is_the_squared_shift(sets):
    real, _ = sets
    shift = np.array([1.0, -2.0, 0.5, 0, 0, 3.0])
    assert frechet_distance(real, real) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(real, real + shift) == pytest.approx((shift**2).sum(), rel=1e-6)


def test_frechet_distance_with_fewer_rows_than_dimensions_is_finite():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 1
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 32 * 0.9  # the mean shift alone contributes 32


def test_diversity_ratio_of_a_shrunken_copy(sets):
    real, _ = sets
    tight = real.mean(0) + 0.5 * (real - real.mean(0))
    cfg = QualityConfig(k=3)
    s = score_set(tight, real, cfg)
    assert s.diversity_rows == len(real)
    assert s.nn_distance_synthetic == pytest.approx(0.5 * mean_nn_distance(real), rel=1e-6)
    assert s.diversity_ratio == pytest.approx(0.5, rel=1e-6)
    same = score_set(real, real, cfg)
    assert same.diversity_ratio == pytest.approx(1.0) and same.precision == 1.0 and same.coverage == 1.0


def test_mean_nn_distance_direct():
    x = np.array([[0.0, 0], [0, 1], [0, 3], [4, 3]])
    assert mean_nn_distance(x) == pytest.approx((1 + 1 + 2 + 4) / 4)


def test_large_sets_are_sampled_with_the_recorded_seed(sets):
    real, fake = sets
    cfg = QualityConfig(k=3, max_samples=30, seed=11)
    a, b = score_set(fake, real, cfg), score_set(fake, real, cfg)
    assert a == b and (a.synthetic_sampled, a.real_sampled, a.diversity_rows) == (30, 30, 30)
    assert (a.synthetic_rows, a.real_rows) == (60, 80)
    assert score_set(fake, real, cfg.model_copy(update={"seed": 12})) != a
    # the real set larger than the synthetic: every score compares equal numbers
    unsampled = score_set(fake, real, QualityConfig(k=3))
    assert (unsampled.real_rows, unsampled.real_sampled, unsampled.diversity_rows) == (80, 60, 60)


def test_no_reference_gives_internal_diversity_only(sets):
    _, fake = sets
    s = score_set(fake, None, QualityConfig())
    assert s.nn_distance_synthetic == pytest.approx(mean_nn_distance(fake))
    assert (s.precision, s.recall, s.frechet_distance, s.diversity_ratio, s.real_rows) == (None, None, None, None, 0)


def test_groups_are_matched_by_name(sets):
    real, fake = sets
    rg = ["a"] * 40 + ["b"] * 40
    fg = ["a"] * 20 + ["b"] * 20 + ["c"] * 20  # no real "c"
    cfg = QualityConfig(k=3)
    overall, groups = score_groups(fake, fg, real, rg, cfg)
    assert overall == score_set(fake, real, cfg)
    assert [g.group for g in groups] == ["a", "b", "c"]
    assert groups[0] == score_set(fake[:20], real[:40], cfg, group="a")
    assert groups[2].precision is None and groups[2].nn_distance_synthetic is not None
    with pytest.raises(ValueError, match="one group per"):
        score_groups(fake, fg[:-1], real, rg, cfg)


def _report(sets, ref="synth@1", scale=1.0):
    real, fake = sets
    cfg = QualityConfig(k=3)
    overall, groups = score_groups(fake * scale, ["a"] * 30 + ["b"] * 30, real, ["a"] * 40 + ["b"] * 40, cfg)
    return QualityReport(ref, "real@1", "clip@abc", cfg, overall, groups)


def test_report_renders_markdown_metrics_and_json(sets, tmp_path):
    r = _report(sets)
    md = r.to_markdown(plot="quality.png")
    assert "reference: **real@1**" in md and "k = 3" in md and "seed 0" in md
    assert "| **all** | 60 | 80 | 60 |" in md and "\n| a | 30 | 40 | 30 |" in md and "![quality per class](quality.png)" in md
    m = r.metrics()
    assert m["quality.coverage"] == r.overall.coverage and m["quality.k"] == 3
    assert m["quality.b.diversity_ratio"] == r.groups[1].diversity_ratio
    assert json.loads(r.dumps())["groups"][0]["group"] == "a"
    png = r.write_plot(tmp_path / "q.png")
    assert png.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".tmp-*"))


def test_side_by_side_gives_differences(sets):
    a, b = _report(sets), _report(sets, "synth@2", scale=0.5)
    rows = {name: (va, vb, d) for name, va, vb, d in side_by_side(a, b)}
    va, vb, d = rows["all.diversity_ratio"]
    assert d == pytest.approx(vb - va) and vb < va
    assert rows["a.synthetic_rows"] == (30, 30, 0)


def test_draws_index_the_full_row_lists_by_group():
    groups = ["b", "a", None, "b", "a", "b", "c"]
    real_groups = ["a", "b", "b", "a", "a"]
    draws = plan_draws(groups, real_groups, QualityConfig(k=1, max_per_group=2))
    assert [d.group for d in draws] == [None, "b", "a", "c"]  # overall first, then first appearance
    by = {d.group: d for d in draws}
    assert len(set(by[None].synthetic)) == 5 == len(by[None].real) and list(by[None].real) == [0, 1, 2, 3, 4]  # n = min(7, 5)
    assert {groups[i] for i in by["b"].synthetic} == {"b"} and len(by["b"].synthetic) == 2  # 3 rows, cap 2
    assert {real_groups[i] for i in by["b"].real} == {"b"} and (by["b"].synthetic_rows, by["b"].real_rows) == (3, 2)
    assert list(by["a"].synthetic) == [1, 4] and len(by["a"].real) == 2 and set(by["a"].real) < {0, 3, 4}
    assert by["c"].real is None and by["c"].real_rows == 0


def test_metric_names_of_free_text_prompts_are_valid_for_mlflow(sets):
    r = _report(sets)
    from mlflow.utils.validation import _validate_metric_name

    r.groups[0].group = "a cat, (red)?"  # MLflow rejects this as a metric name
    assert "quality.a cat_ _red__.coverage" in r.metrics()
    for name in r.metrics():
        _validate_metric_name(name)
