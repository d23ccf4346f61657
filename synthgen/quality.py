"""Fidelity and diversity of a synthetic set against a real one, in an embedding space.

Pure numpy/scipy on (n, d) arrays, so any embedder's vectors work:

- precision, recall (Kynkaanniemi et al. 2019) and density, coverage
  (Naeem et al. 2020) from k-nearest-neighbour balls, as in the ``prdc``
  package (Euclidean distances, strict ``<``, each point's k-th *other*
  neighbour as its radius);
- the Frechet distance between Gaussians fitted to the two sets;
- a nearest-neighbour diversity ratio: mean distance from a synthetic sample
  to its nearest synthetic neighbour over the same among an equal-size
  sample of the real set (1.0: as varied as the real data; below: tighter).

Distances are computed in row chunks, so memory stays at chunk x n however
large the (sampled) sets are. Sets above ``max_samples`` are sampled without
replacement with a seeded generator; the seed is part of the result. The
larger set is sampled down to the smaller one's size (see ``score_set``).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

_CHUNK = 1024  # rows per distance block: 1024 x n float64


class QualityConfig(BaseModel):
    """Neighbourhood size and sampling of the quality report."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(5, ge=1, description="k of the k-NN balls (Naeem et al. use 5)")
    max_samples: int = Field(5000, ge=2, description="sample each set (overall) down to this many rows")
    max_per_group: int = Field(1000, ge=2, description="sample each class or prompt down to this many rows")
    seed: int = Field(0, description="seed of every sample drawn (recorded in the report)")


@dataclass
class SetScores:
    """Scores of one synthetic set (overall, or one class/prompt) against its real counterpart.

    Fields are None where they cannot be computed: no real counterpart, or
    too few rows for k neighbours (precision ... coverage need more than k on
    each side, the Frechet distance two, the diversity ratio two).
    """

    group: str | None  # None: all rows
    synthetic_rows: int
    real_rows: int
    synthetic_sampled: int  # rows used for every score (equal to real_sampled when there is a reference)
    real_sampled: int
    precision: float | None = None
    recall: float | None = None
    density: float | None = None
    coverage: float | None = None
    frechet_distance: float | None = None
    diversity_rows: int = 0  # rows of each set behind the two nn distances (0: fewer than two)
    nn_distance_synthetic: float | None = None  # mean distance to the nearest other synthetic sample
    nn_distance_real: float | None = None
    diversity_ratio: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def pairwise_sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)) in float64, never negative."""
    a64, b64 = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
    d = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return np.maximum(d, 0.0, out=d)


def _blocks(n: int):
    for i in range(0, n, _CHUNK):
        yield slice(i, min(i + _CHUNK, n))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest *other* row (the row itself is the 0th)."""
    if len(x) <= k:
        raise ValueError(f"need more than k={k} rows for k-NN radii, got {len(x)}")
    out = np.empty(len(x))
    for s in _blocks(len(x)):
        d = pairwise_sq_distances(x[s], x)
        out[s] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return out


def prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (both (n, d))."""
    r_rad, f_rad = knn_radii(real, k), knn_radii(fake, k)
    r_sq, f_sq = r_rad**2, f_rad**2
    inside = np.zeros(len(fake))  # per fake: how many real balls contain it
    nearest_fake = np.full(len(real), np.inf)  # per real: squared distance to the nearest fake
    recalled = np.zeros(len(real), bool)  # per real: inside some fake ball
    for s in _blocks(len(real)):
        d = pairwise_sq_distances(real[s], fake)  # (chunk of real, fake)
        inside += (d < r_sq[s, None]).sum(0)
        nearest_fake[s] = d.min(1)
        recalled[s] = (d < f_sq[None, :]).any(1)
    return {
        "precision": float((inside > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(inside.mean() / k),
        "coverage": float((nearest_fake < r_sq).mean()),
    }


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (n, d) sets (as FID does, on any vectors).

    tr(sqrt(S_a S_b)) is taken as the trace of sqrt(sqrt(S_a) S_b sqrt(S_a)), a
    symmetric PSD matrix, so singular covariances (fewer rows than
    dimensions, common per class) need no epsilon and give no complex parts.
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the Frechet distance needs at least two rows per set")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a64, rowvar=False)), np.atleast_2d(np.cov(b64, rowvar=False))
    root_a = _sqrt_psd(s_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2.0 * cross, 0.0))


def mean_nn_distance(x: np.ndarray) -> float:
    """Mean distance from each row to its nearest other row."""
    return float(knn_radii(x, 1).mean())


def sample_indices(rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` of ``rows`` rows without replacement (all, in order, when rows <= n)."""
    if rows <= n:
        return np.arange(rows)
    return np.sort(rng.choice(rows, n, replace=False))


def group_rng(seed: int, group: str | None) -> np.random.Generator:
    """The generator for one group's samples: fixed by (seed, group), independent of other groups."""
    return np.random.default_rng([seed, zlib.crc32((group or "").encode())])


@dataclass
class Draw:
    """The rows one set of scores uses: indices into the full synthetic and real row lists.

    Drawing needs only the group of each row, so a catalog can read the
    embeddings of the drawn rows alone, never a whole version's.
    """

    group: str | None
    synthetic_rows: int
    real_rows: int
    synthetic: np.ndarray
    real: np.ndarray | None  # None: no real counterpart


def draw(synthetic_rows: int, real_rows: int, cfg: QualityConfig, group: str | None = None) -> Draw:
    """Equal-size samples of both sets, n = min(synthetic, real, cap) (see ``score_draw``)."""
    cap = cfg.max_samples if group is None else cfg.max_per_group
    rng = group_rng(cfg.seed, group)
    n = min(synthetic_rows, cap) if real_rows == 0 else min(synthetic_rows, real_rows, cap)
    syn = sample_indices(synthetic_rows, n, rng)
    return Draw(group, synthetic_rows, real_rows, syn, sample_indices(real_rows, n, rng) if real_rows else None)


def positions_by_group(groups: list[str | None]) -> dict[str, np.ndarray]:
    """Row positions per group name, groups in order of first appearance (plan order); None rows left out."""
    if not len(groups):
        return {}
    # Hashing, not sorting Python strings: ~0.1 s for a million rows where np.unique on objects took ~4 s.
    codes, uniq = pd.factorize(np.array(["" if g is None else g for g in groups], object))
    order = np.argsort(codes, kind="stable")  # one sort, not one scan per group
    split = np.split(order, np.cumsum(np.bincount(codes, minlength=len(uniq)))[:-1])
    return {str(uniq[i]): split[i] for i in range(len(uniq)) if uniq[i] != ""}


def plan_draws(synthetic_groups: list[str | None], real_groups: list[str | None] | None,
               cfg: QualityConfig) -> list[Draw]:
    """The overall draw, then one per synthetic class/prompt matched by name to the real rows."""
    n_real = 0 if real_groups is None else len(real_groups)
    draws = [draw(len(synthetic_groups), n_real, cfg)]
    real_pos = positions_by_group(real_groups) if real_groups is not None else {}
    empty = np.zeros(0, np.int64)
    for name, syn_pos in positions_by_group(synthetic_groups).items():
        ref_pos = real_pos.get(name, empty)
        d = draw(len(syn_pos), len(ref_pos), cfg, group=name)
        draws.append(Draw(name, d.synthetic_rows, d.real_rows, syn_pos[d.synthetic],
                          None if d.real is None else ref_pos[d.real]))
    return draws


def score_draw(d: Draw, synthetic: np.ndarray, real: np.ndarray | None, cfg: QualityConfig) -> SetScores:
    """All scores of one draw, given its rows (``synthetic`` = rows d.synthetic, ``real`` = rows d.real).

    Both sets have one size, n = min(synthetic, real, cap): recall,
    coverage, the Frechet distance and nearest-neighbour distances all move
    with the set sizes (identical distributions give coverage ~0.78 at
    k = 5 with three times as many real rows, ~0.97 at equal sizes), so equal
    sizes keep versions of different sizes comparable.
    """
    n = len(synthetic)
    s = SetScores(d.group, d.synthetic_rows, d.real_rows, n, 0 if real is None else len(real))
    if real is not None and n > cfg.k:
        for key, value in prdc(real, synthetic, cfg.k).items():
            setattr(s, key, value)
    if real is not None and n >= 2:
        s.frechet_distance = frechet_distance(synthetic, real)
    if n >= 2:
        s.diversity_rows = n
        s.nn_distance_synthetic = mean_nn_distance(synthetic)
        if real is not None:
            s.nn_distance_real = mean_nn_distance(real)
            if s.nn_distance_real > 0:
                s.diversity_ratio = s.nn_distance_synthetic / s.nn_distance_real
    return s


def score_set(synthetic: np.ndarray, real: np.ndarray | None, cfg: QualityConfig,
              group: str | None = None) -> SetScores:
    """All scores of one synthetic set; ``real`` None (or empty) gives internal diversity only."""
    d = draw(len(synthetic), 0 if real is None else len(real), cfg, group)
    return score_draw(d, synthetic[d.synthetic], None if d.real is None else real[d.real], cfg)


def score_groups(synthetic: np.ndarray, synthetic_groups: list[str | None], real: np.ndarray | None,
                 real_groups: list[str | None] | None, cfg: QualityConfig) -> tuple[SetScores, list[SetScores]]:
    """Overall scores and one per synthetic class/prompt (in order of first appearance), matched by name to real rows."""
    if len(synthetic) != len(synthetic_groups):
        raise ValueError("one group per synthetic row is needed")
    if real is not None and (real_groups is None or len(real) != len(real_groups)):
        raise ValueError("one group per real row is needed")
    draws = plan_draws(synthetic_groups, real_groups if real is not None else None, cfg)
    scores = [score_draw(d, synthetic[d.synthetic], None if d.real is None else real[d.real], cfg) for d in draws]
    return scores[0], scores[1:]
