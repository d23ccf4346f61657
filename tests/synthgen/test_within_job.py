"""The run's own set: cells and candidate pairs give the decisions of a sequential exact scan."""

from __future__ import annotations

import numpy as np
import pytest

from synthgen import within_job
from synthgen.dedup import NearDuplicatePass
from synthgen.records import DUPLICATE, KEPT, Sample


def clustered(n: int, d: int = 32, dup: float = 0.3, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres, a share of them replaced by near-copies (cos 0.9-0.995) of others."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, d))
    x = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = int(n * dup)
    src, dst = rng.integers(0, n, k), rng.integers(0, n, k)
    t = rng.uniform(0.9, 0.995, (k, 1))
    u = rng.standard_normal((k, d))
    u -= (u * x[src]).sum(1, keepdims=True) * x[src]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x[dst] = t * x[src] + np.sqrt(1 - t * t) * u
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def sequential(emb: np.ndarray, eligible: np.ndarray, threshold: float):
    """The definition: visit in order, compare with every kept earlier sample."""
    kept = np.zeros(len(emb), bool)
    best_sim = np.full(len(emb), -np.inf, np.float32)
    best_pos = np.full(len(emb), -1)
    for i in range(len(emb)):
        earlier = np.flatnonzero(kept[:i])
        if len(earlier):
            sims = emb[earlier] @ emb[i]
            j = int(np.argmax(sims))
            best_sim[i], best_pos[i] = sims[j], earlier[j]
        kept[i] = eligible[i] and not (best_sim[i] >= np.float32(threshold))
    return kept, best_sim, best_pos


@pytest.mark.parametrize("block", [64, 4096])
def test_exact_cells_equal_the_sequential_definition(monkeypatch, block):
    monkeypatch.setattr(within_job, "_BLOCK", block)  # 64: pairs and evidence across many blocks
    emb = clustered(700)
    eligible = np.random.default_rng(1).random(700) > 0.1
    got = within_job.resolve(emb, eligible, 0.95)
    kept, best_sim, best_pos = sequential(emb, eligible, 0.95)
    assert got.kind == "exact"
    assert 0 < (~got.kept & eligible).sum()  # there are duplicates to resolve
    np.testing.assert_array_equal(got.kept, kept)
    np.testing.assert_allclose(got.best_sim, best_sim, atol=1e-6)
    np.testing.assert_array_equal(got.best_pos, best_pos)


def test_ivf_cells_match_exact_up_to_the_recall_target():
    emb = clustered(6000, d=64, seed=3)
    eligible = np.ones(len(emb), bool)
    exact = within_job.resolve(emb, eligible, 0.95)
    ivf = within_job.resolve(emb, eligible, 0.95, exact_limit=0)
    assert ivf.kind == "ivf" and ivf.nlist > 1 and 1.0 <= ivf.probes <= ivf.nprobe
    assert (ivf.kept == exact.kept).mean() >= 0.99
    assert (~exact.kept).sum() > 500  # the comparison covers many duplicates
    # An approximate search can miss a neighbour, never misreport one: each evidence is a true, earlier, kept pair.
    found = np.flatnonzero(ivf.best_pos >= 0)
    assert len(found) > len(emb) // 2
    p = ivf.best_pos[found]
    np.testing.assert_allclose(ivf.best_sim[found], np.einsum("ij,ij->i", emb[found], emb[p]), atol=1e-5)
    assert np.all(p < found) and ivf.kept[p].all()


def test_ivf_finds_the_recall_target_of_the_duplicates_themselves():
    """Recall is measured over what matters: the rows exact search calls duplicates (most rows are not)."""
    emb = clustered(6000, d=64, seed=5)
    eligible = np.ones(len(emb), bool)
    exact = within_job.resolve(emb, eligible, 0.95)
    ivf = within_job.resolve(emb, eligible, 0.95, exact_limit=0)
    duplicates = ~exact.kept
    assert ivf.kind == "ivf" and duplicates.sum() > 500
    assert (~ivf.kept[duplicates]).mean() >= 0.99  # of the true duplicates, IVF drops at least 99%
    close = exact.best_sim >= np.float32(0.95)  # and finds a neighbour at the threshold for 99% of those that have one
    assert (ivf.best_sim[close] >= np.float32(0.95)).mean() >= 0.99


def samples_of(emb: np.ndarray, scores=None) -> list[Sample]:
    out = [Sample(sample_id=f"s{i}", origin="synthetic", embedding=e) for i, e in enumerate(emb)]
    for s, sc in zip(out, scores or [None] * len(out)):
        s.clip_score = sc
    return out


@pytest.mark.parametrize("exact_limit", [0, 10_000])
def test_ties_keep_the_earliest_in_plan_order_through_either_path(exact_limit):
    base = clustered(400, d=32, dup=0.0, seed=5)
    emb = np.concatenate([base, base[:50], base[:50]])  # two identical copies of the first 50
    samples = samples_of(emb)
    NearDuplicatePass(0.97, exact_limit=exact_limit)(samples)
    status = [s.status for s in samples]
    assert status[400:] == [DUPLICATE] * 100
    assert all(samples[400 + i].nn_id == f"s{i}" and samples[450 + i].nn_id == f"s{i}" for i in range(50))
    assert status[:50] == [KEPT] * 50


@pytest.mark.parametrize("exact_limit", [0, 10_000])
def test_quality_policy_keeps_the_better_copy_through_either_path(exact_limit):
    base = clustered(300, d=32, dup=0.0, seed=6)
    emb = np.concatenate([base, base])
    scores = [0.1] * 300 + [0.9] * 300  # the later copies are better aligned
    samples = samples_of(emb, scores)
    NearDuplicatePass(0.97, keep="quality", exact_limit=exact_limit)(samples)
    assert [s.status for s in samples] == [DUPLICATE] * 300 + [KEPT] * 300
    assert [s.nn_id for s in samples[:300]] == [f"s{300 + i}" for i in range(300)]


def test_threshold_is_compared_exactly_whatever_its_float32_rounding():
    t = 0.97  # float32(0.97) rounds up: a float32 similarity equal to it is >= 0.97, the one below is not
    assert float(within_job.float32_floor(t)) >= t
    assert float(np.nextafter(within_job.float32_floor(t), np.float32(0))) < t


@pytest.mark.parametrize("exact_limit", [0, 10_000])
def test_the_thread_count_never_changes_the_decisions_or_the_evidence(exact_limit):
    emb = clustered(3000, d=32, seed=7)
    eligible = np.random.default_rng(2).random(len(emb)) > 0.05
    one = within_job.resolve(emb, eligible, 0.95, exact_limit=exact_limit, threads=1)
    two = within_job.resolve(emb, eligible, 0.95, exact_limit=exact_limit, threads=2)
    assert one.kind == ("ivf" if exact_limit == 0 else "exact") and (~one.kept).sum() > 100
    for a, b in ((one.kept, two.kept), (one.best_sim, two.best_sim), (one.best_pos, two.best_pos)):
        np.testing.assert_array_equal(a, b)


def test_exact_work_items_and_query_blocks_split_anywhere_equal_the_sequential_definition(monkeypatch):
    # 7 queries per block and 50 per work item: pairs, masks and evidence cross every kind of boundary.
    monkeypatch.setattr(within_job, "_BLOCK", 7)
    monkeypatch.setattr(within_job, "_EXACT_QUERIES", 50)
    emb = clustered(500, seed=8)
    eligible = np.random.default_rng(3).random(500) > 0.1
    got = within_job.resolve(emb, eligible, 0.95, threads=2)
    kept, best_sim, best_pos = sequential(emb, eligible, 0.95)
    np.testing.assert_array_equal(got.kept, kept)
    np.testing.assert_allclose(got.best_sim, best_sim, atol=1e-6)
    np.testing.assert_array_equal(got.best_pos, best_pos)


@pytest.mark.parametrize("exact_limit", [0, 10_000])
def test_a_tie_between_two_kept_samples_goes_to_the_earlier_whichever_block_or_cell_finds_it(monkeypatch, exact_limit):
    monkeypatch.setattr(within_job, "_BLOCK", 16)
    rng = np.random.default_rng(9)
    d = 32
    filler = rng.standard_normal((1200, d - 3)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    emb = np.concatenate([np.zeros((1200, 3), np.float32), filler], axis=1)  # orthogonal to the three below
    c, s = np.float32(0.9), np.float32(np.sqrt(1 - 0.9**2))
    a, b, q = np.zeros((3, d), np.float32)
    a[:2], b[:2], q[0] = (c, s), (c, -s), 1.0  # a.q == b.q == c exactly in float32, a.b < threshold
    emb[[10, 700, 1100]] = a, b, q
    got = within_job.resolve(emb, np.ones(len(emb), bool), 0.95, exact_limit=exact_limit)
    assert got.kept[[10, 700, 1100]].all()
    assert got.best_pos[1100] == 10 and got.best_sim[1100] == c
