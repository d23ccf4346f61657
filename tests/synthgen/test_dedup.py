import numpy as np

from synthgen.dedup import decide
from synthgen.vector_set import VectorSet
from synthgen.records import DUPLICATE, KEPT, NN_DATASET, NN_REAL, NN_RUN, REAL_COPY


def unit(rng, n, d=32):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(x, rng, eps=0.01):
    y = x + eps * rng.normal(size=x.shape).astype(np.float32)
    return y / np.linalg.norm(y, axis=-1, keepdims=True)


def test_earliest_in_plan_wins_and_evidence_is_kept():
    rng = np.random.default_rng(0)
    base = unit(rng, 50)
    emb = np.concatenate([base, near(base[[3, 10]], rng)])  # 50, 51 copy 3, 10
    ids = [f"s{i}" for i in range(len(emb))]
    d = decide(ids, emb, threshold=0.95, real_threshold=0.95)
    assert d.status[:50] == [KEPT] * 50
    assert d.status[50:] == [DUPLICATE, DUPLICATE]
    assert d.nn_id[50:] == ["s3", "s10"] and d.nn_source[50] == NN_RUN
    assert d.nn_similarity[50] >= 0.95 and "s3" in d.drop_reason[50]
    # kept rows carry evidence too: their nearest earlier neighbour
    assert d.nn_id[0] is None and d.nn_id[1] == "s0" and d.nn_similarity[1] < 0.95


def test_duplicates_inside_one_chunk_and_across_chunks():
    rng = np.random.default_rng(1)
    base = unit(rng, 600)
    emb = base.copy()
    emb[5] = near(base[4], rng)  # same chunk
    emb[400] = near(base[7], rng)  # later chunk
    d = decide([str(i) for i in range(600)], emb, 0.95, 0.95)
    assert d.status[5] == DUPLICATE and d.nn_id[5] == "4"
    assert d.status[400] == DUPLICATE and d.nn_id[400] == "7"
    assert d.counts() == {KEPT: 598, DUPLICATE: 2}


def test_dropped_samples_do_not_drop_others():
    rng = np.random.default_rng(2)
    a = unit(rng, 1)[0]
    b = near(a, rng, 0.01)  # dup of a
    c = near(b, rng, 0.01)  # close to b, but b was dropped
    d = decide(["a", "b", "c"], np.stack([a, b, c]), 0.98, 0.98)
    assert d.status[1] == DUPLICATE
    assert d.nn_id[2] == "a"  # compared only with kept samples


def test_real_copies_blocked_and_earlier_versions_count():
    rng = np.random.default_rng(3)
    real = unit(rng, 20)
    earlier = unit(rng, 20)
    new = np.concatenate([near(real[[2]], rng), near(earlier[[5]], rng), unit(rng, 3)])
    d = decide(
        ["n0", "n1", "n2", "n3", "n4"], new, 0.95, 0.95,
        earlier=VectorSet.build([f"e{i}" for i in range(20)], earlier),
        real=VectorSet.build([f"r{i}" for i in range(20)], real),
    )
    assert d.status == [REAL_COPY, DUPLICATE, KEPT, KEPT, KEPT]
    assert d.real_nn_id[0] == "r2" and d.nn_source[0] == NN_REAL
    assert d.nn_id[1] == "e5" and d.nn_source[1] == NN_DATASET
    assert all(s is not None for s in d.real_nn_similarity)


def test_pure_function_of_inputs():
    rng = np.random.default_rng(4)
    emb = np.concatenate([unit(rng, 300), near(unit(rng, 300), rng, 0.05)])
    ids = [str(i) for i in range(len(emb))]
    first = decide(ids, emb, 0.9, 0.9)
    second = decide(list(ids), emb.copy(), 0.9, 0.9)
    assert first == second


def test_quality_keep_policy_and_low_quality():
    from synthgen.records import LOW_QUALITY

    rng = np.random.default_rng(5)
    a = unit(rng, 1)[0]
    b = near(a, rng, 0.01)
    c = unit(rng, 1)[0]
    emb, ids = np.stack([a, b, c]), ["a", "b", "c"]
    first = decide(ids, emb, 0.95, 0.99, scores=[0.2, 0.3, 0.25])
    assert first.status == [KEPT, DUPLICATE, KEPT]
    best = decide(ids, emb, 0.95, 0.99, scores=[0.2, 0.3, 0.25], keep="quality")
    assert best.status == [DUPLICATE, KEPT, KEPT] and best.nn_id[0] == "b"  # the better-aligned one stays
    low = decide(ids, emb, 0.95, 0.99, scores=[0.2, 0.3, 0.1], min_score=0.15)
    assert low.status == [KEPT, DUPLICATE, LOW_QUALITY] and "0.1000 < 0.15" in low.drop_reason[2]
