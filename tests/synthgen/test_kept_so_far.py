"""A job decided shard by shard (``NearDuplicatePass(before=KeptSoFar)``) equals one pass over the whole job."""

import numpy as np
import pytest

from synthgen.dedup import NearDuplicatePass
from synthgen.vector_set import VectorSet
from synthgen.records import Sample
from synthgen.rules.real_copy import ClipRealCopy
from synthgen.kept_so_far import KeptSoFar

D = 16


def sign_vectors(rng, n: int, base: np.ndarray | None = None, flips: int = 0) -> np.ndarray:
    """Unit vectors of +-0.25 entries: every dot product is a multiple of 1/16, exact in float32
    whatever the summation order, so ties are real ties and sims compare bit for bit."""
    if base is None:
        return (rng.integers(0, 2, (n, D)) * 2 - 1).astype(np.float32) * 0.25
    out = np.repeat(base[None], n, 0).copy()
    for row in out:
        row[rng.choice(D, flips, replace=False)] *= -1
    return out


def job(rng) -> np.ndarray:
    """60 samples: fresh ones, exact copies and near copies (1-2 flipped signs) of earlier ones, across shards."""
    rows = list(sign_vectors(rng, 30))
    for k in range(30):
        src = rows[int(rng.integers(0, len(rows)))]
        rows.append(sign_vectors(rng, 1, src, int(rng.integers(0, 3)))[0])
    order = rng.permutation(len(rows))
    return np.stack([rows[i] for i in order])


def samples_of(emb: np.ndarray) -> list[Sample]:
    return [Sample(sample_id=f"s{i:03d}", origin="synthetic", embedding=e, plan_index=i) for i, e in enumerate(emb)]


def outcome(samples):
    return [(s.status, s.drop_reason, s.nn_id, s.nn_source, s.nn_similarity, s.real_nn_id, s.real_nn_similarity)
            for s in samples]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shard_size", [1, 7, 16, 60])
def test_shard_by_shard_equals_one_pass(seed, shard_size):
    rng = np.random.default_rng(seed)
    emb = job(rng)
    earlier = VectorSet.build([f"p{i}" for i in range(8)], np.concatenate([emb[[3, 40]], sign_vectors(rng, 6)]))
    real = VectorSet.build([f"r{i}" for i in range(6)], np.concatenate([emb[[10]], sign_vectors(rng, 5)]))
    rules = [ClipRealCopy(0.9)]
    whole = samples_of(emb)
    NearDuplicatePass(0.75, rules, earlier, real)(whole)

    by_shard, run = samples_of(emb), KeptSoFar()
    for start in range(0, len(emb), shard_size):
        part = by_shard[start : start + shard_size]
        NearDuplicatePass(0.75, rules, earlier, real, before=run)(part)
        kept = [s for s in part if s.status == "kept"]
        if kept:
            run.add([s.sample_id for s in kept], np.stack([s.embedding for s in kept]))
    assert outcome(by_shard) == outcome(whole)
    statuses = {s.status for s in whole}
    assert {"kept", "dropped_duplicate", "blocked_real_copy"} <= statuses
    # ties happened: some sample's nearest is at the same similarity as another kept one
    assert any(s.nn_similarity == 1.0 and s.nn_source == "run" for s in whole)


def test_before_is_refused_with_keep_quality():
    with pytest.raises(ValueError, match="keep='first'"):
        NearDuplicatePass(0.9, keep="quality", before=KeptSoFar())


def test_kept_so_far_beyond_the_exact_limit_finds_the_near_copies():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((3000, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    run = KeptSoFar(exact_limit=500)
    for start in range(0, 3000, 250):
        run.add([f"s{i}" for i in range(start, start + 250)], emb[start : start + 250])
    assert run.ntotal == 3000 and len(run.frozen) >= 1
    queries = emb[::7] + 0.05 * rng.standard_normal((len(emb[::7]), 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    _, ids = run.nearest(queries)
    found = np.mean([i == f"s{k * 7}" for k, i in enumerate(ids)])
    assert found >= 0.99
