"""The training-utility figure: a ridge probe trained on synthetic embeddings, tested on held-out real ones."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from synthgen.quality import QualityConfig
from synthgen.utility import TEST_SHARE, fit_ridge, plan_utility, split_real, utility


def _blobs(n_per: int, classes: int, seed: int, spread: float = 0.6, dim: int = 6):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(classes, dim)) * 2
    x = np.concatenate([centres[c] + spread * rng.normal(size=(n_per, dim)) for c in range(classes)])
    return x.astype(np.float32), [f"c{c}" for c in range(classes) for _ in range(n_per)]


def test_the_probe_predicts_as_sklearn_ridge_classifier():
    x, y = _blobs(30, 4, 0, spread=2.0)
    classes = sorted(set(y))
    w, b = fit_ridge(x, np.array(y, object), classes)
    ours = np.array(classes)[np.argmax(x.astype(np.float64) @ w + b, 1)]
    assert (ours == RidgeClassifier(alpha=1.0).fit(x, y).predict(x)).all()


def test_the_real_split_is_per_class_seeded_and_independent_of_other_classes():
    groups = ["a"] * 50 + ["b"] * 10 + ["c"]
    train, test = split_real(groups, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(61)) and not set(train) & set(test)
    assert [sum(groups[i] == g for i in test) for g in "abc"] == [int(50 * TEST_SHARE), int(10 * TEST_SHARE), 0]
    assert (split_real(groups, 0)[1] == test).all() and not (split_real(groups, 1)[1] == test).all()
    _, test_a_alone = split_real(["a"] * 50, seed=0)
    assert test_a_alone.tolist() == [i for i in test if i < 50]  # class b's rows change nothing of a's


def test_a_set_like_the_real_one_scores_near_one_and_a_mislabelled_one_far_below():
    real, real_y = _blobs(100, 5, 1, spread=1.5)
    like, like_y = _blobs(60, 5, 2, spread=1.5)
    good = utility(like, like_y, real, real_y, QualityConfig())
    assert good.classes == 5 and good.train_rows == 300 and good.test_rows == 100  # n = min(300, 400 real train)
    assert good.trtr < 1 and good.ratio == pytest.approx(1.0, abs=0.05)
    wrong = utility(like, list(np.random.default_rng(3).permutation(like_y)), real, real_y, QualityConfig())
    assert wrong.ratio < 0.5


def test_both_training_sets_have_one_size_and_only_shared_classes_count():
    real, real_y = _blobs(50, 3, 1)
    syn, syn_y = _blobs(200, 2, 2)
    syn_y = [{"c1": "c9"}.get(g, g) for g in syn_y]  # c1 unknown to the real set
    d = plan_utility(syn_y, real_y, QualityConfig(max_samples=60))
    assert d.classes == ["c0"] and len(d.synthetic) == len(d.real_train) == 40  # c0's real training rows
    s = utility(syn, syn_y, real, real_y, QualityConfig())
    assert s.tstr is None and s.ratio is None and "a probe needs two" in s.note
