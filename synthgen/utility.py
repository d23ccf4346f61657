"""Training utility: a linear probe trained on synthetic embeddings, tested on held-out real ones.

Train-on-synthetic / test-on-real (TSTR) in the embedder's space, as a
ratio to train-on-real / test-on-real (TRTR) at the same training size:
1.0 means a linear classifier learns the real classes as well from the
synthetic rows as from as many real rows. Pure numpy on (n, d) arrays, like
``synthgen.quality``; the drawing needs only each row's group (class name,
else prompt), so a catalog reads the drawn rows' embeddings alone.

- The real set is split once per class into a test part (``TEST_SHARE``,
  at least one row of a class with two or more) and a training part, with a
  generator seeded by (seed, class): the split never depends on the
  synthetic set or on other classes.
- Only classes present in both sets take part; fewer than two: no score.
- Both training sets have one size, n = min(synthetic rows, real training
  rows, ``max_samples``), drawn with seeded generators; the test set is at
  most ``max_samples`` real rows.
- The probe is a closed-form ridge classifier (one-hot least squares,
  centred, ``RIDGE_ALPHA``): deterministic, no iterations to converge, and
  a d x d solve however many rows (``sklearn.linear_model.RidgeClassifier``
  gives the same predictions; a test checks it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from synthgen.quality import QualityConfig, group_rng, positions_by_group, sample_indices

TEST_SHARE = 0.2  # of each real class held out for testing
RIDGE_ALPHA = 1.0
_SPLIT = "linear-probe-split"  # group-name salt: the split's draws differ from the quality report's


@dataclass
class UtilityScores:
    """TSTR, TRTR and their ratio; None where it cannot be computed (see ``note``)."""

    classes: int  # classes in both sets
    train_rows: int  # n: rows of each training set
    test_rows: int  # held-out real rows the probes are tested on
    tstr: float | None = None  # accuracy on held-out real rows, trained on n synthetic rows
    trtr: float | None = None  # the same, trained on n real training rows
    ratio: float | None = None  # tstr / trtr
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class UtilityDraw:
    """Row indices (sorted) into the full synthetic and real row lists, and each row's label."""

    classes: list[str]
    synthetic: np.ndarray
    real_train: np.ndarray
    real_test: np.ndarray


def split_real(real_groups: list[str | None], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions of the real rows: ``TEST_SHARE`` of each class held out, seeded per class."""
    return split_positions(positions_by_group(real_groups), len(real_groups), seed)


def split_positions(by_class: dict[str, np.ndarray], rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``split_real`` from the rows of each class (``synthgen.quality.positions_by_group``)."""
    is_test = np.zeros(rows, bool)
    for name, pos in by_class.items():
        n_test = max(1, int(round(len(pos) * TEST_SHARE))) if len(pos) > 1 else 0  # a lone row trains
        if n_test:
            is_test[pos[sample_indices(len(pos), n_test, group_rng(seed, f"{_SPLIT}:{name}"))]] = True
    grouped = np.zeros(rows, bool)
    for pos in by_class.values():
        grouped[pos] = True
    return np.flatnonzero(grouped & ~is_test), np.flatnonzero(is_test)


def plan_utility(synthetic_groups: list[str | None], real_groups: list[str | None],
                 cfg: QualityConfig) -> UtilityDraw:
    """Which rows the probes train and test on (needs only each row's group)."""
    syn_pos, real_pos = positions_by_group(synthetic_groups), positions_by_group(real_groups)
    classes = sorted(set(syn_pos) & set(real_pos))
    train, test = split_positions(real_pos, len(real_groups), cfg.seed)
    in_shared = np.zeros(len(real_groups), bool)  # real rows of a class the synthetic set has too
    for name in classes:
        in_shared[real_pos[name]] = True
    syn = np.sort(np.concatenate([syn_pos[name] for name in classes])) if classes else np.zeros(0, np.int64)
    train, test = train[in_shared[train]], test[in_shared[test]]
    n = min(len(syn), len(train), cfg.max_samples)
    rng = group_rng(cfg.seed, _SPLIT)
    return UtilityDraw(classes, syn[sample_indices(len(syn), n, rng)], train[sample_indices(len(train), n, rng)],
                       test[sample_indices(len(test), cfg.max_samples, rng)])


def fit_ridge(x: np.ndarray, labels: np.ndarray, classes: list[str], alpha: float = RIDGE_ALPHA):
    """A ridge classifier's (weights, bias): one-hot targets in {-1, 1}, centred, closed form."""
    x64 = x.astype(np.float64)
    y = np.where(labels[:, None] == np.array(classes, object)[None, :], 1.0, -1.0)
    mx, my = x64.mean(0), y.mean(0)
    xc = x64 - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def probe_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                   classes: list[str]) -> float:
    """Accuracy on (test_x, test_y) of a ridge probe fitted on (train_x, train_y)."""
    w, b = fit_ridge(train_x, train_y, classes)
    pred = np.array(classes, object)[np.argmax(test_x.astype(np.float64) @ w + b, 1)]
    return float((pred == test_y).mean())


def score_utility(d: UtilityDraw, synthetic: np.ndarray, synthetic_y: np.ndarray, real_train: np.ndarray,
                  real_train_y: np.ndarray, real_test: np.ndarray, real_test_y: np.ndarray) -> UtilityScores:
    """TSTR / TRTR of one draw, given its rows (embeddings and labels, in the draw's order)."""
    s = UtilityScores(len(d.classes), len(d.synthetic), len(d.real_test))
    if len(d.classes) < 2:
        s.note = f"{len(d.classes)} class(es) in both sets: a probe needs two"
        return s
    if not len(d.synthetic) or not len(d.real_test):
        s.note = "no synthetic or no held-out real rows of the shared classes"
        return s
    s.tstr = probe_accuracy(synthetic, synthetic_y, real_test, real_test_y, d.classes)
    s.trtr = probe_accuracy(real_train, real_train_y, real_test, real_test_y, d.classes)
    s.ratio = s.tstr / s.trtr if s.trtr > 0 else None
    return s


def utility(synthetic: np.ndarray, synthetic_groups: list[str | None], real: np.ndarray,
            real_groups: list[str | None], cfg: QualityConfig) -> UtilityScores:
    """TSTR / TRTR of in-memory sets (one group per row): ``plan_utility`` then ``score_utility``."""
    d = plan_utility(synthetic_groups, real_groups, cfg)
    sy, ry = np.array(synthetic_groups, object), np.array(real_groups, object)
    return score_utility(d, synthetic[d.synthetic], sy[d.synthetic], real[d.real_train], ry[d.real_train],
                         real[d.real_test], ry[d.real_test])
