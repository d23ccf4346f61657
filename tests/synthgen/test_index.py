import faiss
import numpy as np
import pytest

from synthgen.dedup import decide
from synthgen.vector_set import VectorSet
from synthgen.index import (
    IndexChoice, SegmentedVectorSet, build_index, describe, ivf_plan, near_duplicate_probes, vector_set,
)

faiss.omp_set_num_threads(1)

D = 32


def clustered(rng, n, d=D, k=20):
    """Unit vectors around k random centres (cosine ~0.7 to their centre)."""
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(x, rng, cos=0.97):
    """Unit vectors at cosine exactly ``cos`` to the rows of x."""
    u = rng.normal(size=x.shape).astype(np.float32)
    u -= np.sum(u * x, axis=1, keepdims=True) * x
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    y = cos * x + np.sqrt(1 - cos**2) * u
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    base = clustered(rng, 2000)
    src = rng.choice(2000, 100, replace=False)
    return base, src, near(base[src], rng, cos=0.955)


def test_small_sets_get_exact_flat():
    emb = clustered(np.random.default_rng(1), 500)
    index = build_index(emb)
    assert isinstance(faiss.downcast_index(index), faiss.IndexFlatIP)
    assert describe(index) == IndexChoice("flat", 500, D)
    empty = build_index(np.zeros((0, D), np.float32))
    assert empty.ntotal == 0 and describe(empty).kind == "flat"


def test_plan_follows_size():
    assert ivf_plan(1_000_000) == (4000, 160_000)
    assert ivf_plan(2000) == (50, 2000)  # capped: >= 40 training points per cell


def test_above_exact_limit_builds_calibrated_ivf(data):
    base, _, _ = data
    index = build_index(base, exact_limit=1000)
    assert isinstance(faiss.downcast_index(index), faiss.IndexIVFFlat)
    ivf = faiss.extract_index_ivf(index)
    assert ivf.metric_type == faiss.METRIC_INNER_PRODUCT
    c = describe(index)
    assert (c.kind, c.n, c.nlist, c.train_size) == ("ivf", 2000, 50, 2000)
    assert 1 <= c.nprobe <= 50 and c.calibrated_recall >= 0.995
    assert build_index(base, exact_limit=1000, nprobe=7).nprobe == 7
    ivf.nprobe = c.nprobe + 1  # changed after calibration: the calibrated recall no longer applies
    assert describe(index).calibrated_recall is None


def test_ivf_is_deterministic_for_a_seed(data):
    base, _, queries = data
    a, b = build_index(base, exact_limit=1000, seed=3), build_index(base, exact_limit=1000, seed=3)
    ca = faiss.extract_index_ivf(a).quantizer.reconstruct_n(0, 50)
    cb = faiss.extract_index_ivf(b).quantizer.reconstruct_n(0, 50)
    np.testing.assert_array_equal(ca, cb)
    assert describe(a) == describe(b)
    for x, y in zip(a.search(queries, 3), b.search(queries, 3)):
        np.testing.assert_array_equal(x, y)


def test_ivf_and_hnsw_find_planted_near_duplicates(data):
    base, src, queries = data
    exact, _ = build_index(base).search(queries, 1)
    assert (exact[:, 0] >= 0.95).all()
    for kind in ("ivf", "hnsw"):
        sims, idx = build_index(base, kind=kind, exact_limit=1000).search(queries, 1)
        assert (sims[:, 0] >= 0.95).all(), kind  # recall 1.0
        np.testing.assert_allclose(sims[:, 0], exact[:, 0], atol=1e-5)
        assert (idx[:, 0] == src).mean() >= 0.99  # the planted source itself


def test_probes_sit_at_the_threshold(data):
    base = data[0]
    q, src = near_duplicate_probes(base, 0.95, 300, seed=1)
    np.testing.assert_allclose(np.sum(q * base[src], axis=1), 0.95, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)


def test_vector_set_nearest_returns_ids(data):
    base, src, queries = data
    ids = [f"e{i}" for i in range(len(base))]
    for vs in (vector_set(ids, base), vector_set(ids, base, exact_limit=1000)):
        assert isinstance(vs, VectorSet)
        sims, got = vs.nearest(queries)
        assert got == [f"e{i}" for i in src]
        assert (sims >= 0.95).all()
    with pytest.raises(ValueError):
        vector_set(ids[:-1], base)


def test_decide_same_with_flat_or_ivf_earlier(data):
    base, src, _ = data
    rng = np.random.default_rng(5)
    ids = [f"e{i}" for i in range(len(base))]
    # new samples: copies of earlier ones (some just above, some just below 0.97), and fresh ones
    new = np.concatenate([
        near(base[src[:40]], rng, 0.985), near(base[src[40:60]], rng, 0.955), clustered(rng, 60),
    ])
    new_ids = [f"n{i}" for i in range(len(new))]
    flat = decide(new_ids, new, 0.97, 0.99, earlier=vector_set(ids, base))
    ivf_set = vector_set(ids, base, exact_limit=1000, threshold=0.95)
    assert describe(ivf_set.index).kind == "ivf"
    approx = decide(new_ids, new, 0.97, 0.99, earlier=ivf_set)
    assert flat.counts()["dropped_duplicate"] == 40
    assert approx.status == flat.status and approx.drop_reason == flat.drop_reason
    # Evidence is exact for the near-duplicates; for the fresh samples it is
    # the best match IVF found, which may be a farther one (never a closer one).
    assert approx.nn_id[:60] == flat.nn_id[:60] and approx.nn_source[:60] == flat.nn_source[:60]
    np.testing.assert_allclose(approx.nn_similarity[:60], flat.nn_similarity[:60], atol=1e-5)
    assert all(a <= f + 1e-5 for a, f in zip(approx.nn_similarity, flat.nn_similarity))


def test_segmented_set_answers_like_one_flat_index(data):
    base, _, queries = data
    ids = [f"e{i}" for i in range(len(base))]
    copy = base.copy()
    copy[1500] = copy[20]  # a tie across parts: the earlier row wins, as in one flat index
    cuts = [0, 300, 1200, 1201, 2000]
    parts = SegmentedVectorSet([vector_set(ids[a:b], copy[a:b]) for a, b in zip(cuts, cuts[1:])])
    assert parts.ids == ids and parts.ntotal == len(ids)
    q = np.concatenate([queries, copy[[20, 1500, 7]]])
    sims, got = parts.nearest(q)
    want_sims, want = VectorSet.build(ids, copy).nearest(q)
    assert got == want and got[-3:] == ["e20", "e20", "e7"]
    np.testing.assert_array_equal(sims, want_sims)
    empty = SegmentedVectorSet([])
    sims, got = empty.nearest(q[:2])
    assert got == [None, None] and np.isneginf(sims).all()
