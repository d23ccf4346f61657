"""Every threshold rule of ``decide`` at its boundary: exactly at it, and one float32 ulp either side.

Similarities are built to be exact in float32: the sample is
``cos * a + sqrt(1 - cos^2) * b`` against the unit vector ``a`` (orthogonal
to ``b``), so the inner product FAISS or numpy computes is ``cos`` itself.
Thresholds are float32 values too, so "at the threshold" is exact. The rules
are written against ``decide`` (the public, pure decision function) and the
pixel guard's public output, so they hold whatever the rules look like inside.
"""

from __future__ import annotations

import numpy as np
import pytest

from synthgen.dedup import decide
from synthgen.vector_set import VectorSet
from synthgen.records import DUPLICATE, KEPT, LOW_QUALITY, NN_DATASET, NN_RUN, REAL_COPY

DIM = 300  # room for orthogonal fillers: one basis vector per filler sample
CHUNK = 256  # decide walks the plan in chunks of 256; a pair across the boundary goes through FAISS


def f32(x: float) -> float:
    """``x`` rounded to float32, as a Python float (exactly representable in both)."""
    return float(np.float32(x))


def ulp_cases(threshold: float) -> dict[str, float]:
    t = np.float32(threshold)
    return {
        "below": float(np.nextafter(t, np.float32(-np.inf))),
        "at": float(t),
        "above": float(np.nextafter(t, np.float32(np.inf))),
    }


def basis(i: int) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[i] = 1.0
    return v


def at_cosine(cos: float, to: int = 0, other: int = 1) -> np.ndarray:
    """A unit vector whose inner product with ``basis(to)`` is exactly the float32 ``cos``."""
    v = np.zeros(DIM, np.float32)
    v[to] = np.float32(cos)
    v[other] = np.float32(np.sqrt(max(0.0, 1.0 - cos * cos)))
    return v


def fillers(n: int, first: int = 2) -> list[np.ndarray]:
    """Samples orthogonal to everything else (never duplicates of anything)."""
    return [basis(first + i) for i in range(n)]


THRESHOLDS = [f32(0.97), f32(0.95), f32(0.9)]
EXPECT_AT_LEAST = {"below": KEPT, "at": DUPLICATE, "above": DUPLICATE}  # cosine >= threshold drops


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_duplicate_of_an_earlier_sample_in_the_same_chunk(threshold, case):
    cos = ulp_cases(threshold)[case]
    emb = np.stack([basis(0), *fillers(3), at_cosine(cos)])
    d = decide([f"s{i}" for i in range(len(emb))], emb, threshold, real_threshold=1.0)
    assert d.status[:4] == [KEPT] * 4
    assert d.status[4] == EXPECT_AT_LEAST[case]
    assert (d.nn_id[4], d.nn_source[4], d.nn_similarity[4]) == ("s0", NN_RUN, cos)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_duplicate_of_a_kept_sample_in_an_earlier_chunk(threshold, case):
    cos = ulp_cases(threshold)[case]
    emb = np.stack([basis(0), *fillers(CHUNK - 1), at_cosine(cos)])  # the pair straddles the chunk boundary
    d = decide([f"s{i}" for i in range(len(emb))], emb, threshold, real_threshold=1.0)
    assert d.status[CHUNK] == EXPECT_AT_LEAST[case]
    assert d.status.count(KEPT) == CHUNK + (case == "below")
    assert (d.nn_id[CHUNK], d.nn_source[CHUNK], d.nn_similarity[CHUNK]) == ("s0", NN_RUN, cos)


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_duplicate_of_a_sample_in_an_earlier_version(threshold, case):
    cos = ulp_cases(threshold)[case]
    earlier = VectorSet.build(["old"], basis(0)[None])
    d = decide(["new", "f"], np.stack([at_cosine(cos), basis(5)]), threshold, real_threshold=1.0, earlier=earlier)
    assert d.status == [EXPECT_AT_LEAST[case], KEPT]
    assert (d.nn_id[0], d.nn_source[0], d.nn_similarity[0]) == ("old", NN_DATASET, cos)


@pytest.mark.parametrize("real_threshold", [f32(0.98), f32(0.95)])
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_clip_memorisation_guard_blocks_at_the_real_threshold(real_threshold, case):
    cos = ulp_cases(real_threshold)[case]
    real = VectorSet.build(["r0"], basis(0)[None])
    d = decide(["s0"], at_cosine(cos)[None], threshold=f32(0.97), real_threshold=real_threshold, real=real)
    # below the real threshold the sample is still not a duplicate (nothing synthetic is near it)
    assert d.status == [{"below": KEPT, "at": REAL_COPY, "above": REAL_COPY}[case]]
    assert (d.real_nn_id[0], d.real_nn_similarity[0]) == ("r0", cos)


@pytest.mark.parametrize("pixel_threshold", [f32(0.24), f32(0.15)])
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_pixel_memorisation_guard_blocks_at_or_below_the_pixel_threshold(pixel_threshold, case):
    dist = ulp_cases(pixel_threshold)[case]
    d = decide(["s0", "s1"], np.stack([basis(0), basis(1)]), threshold=f32(0.97), real_threshold=f32(0.98),
               real_pixel=[(dist, "r7"), (None, None)], pixel_threshold=pixel_threshold)
    assert d.status == [{"below": REAL_COPY, "at": REAL_COPY, "above": KEPT}[case], KEPT]


def test_pixel_guard_is_off_without_a_pixel_threshold():
    d = decide(["s0"], basis(0)[None], threshold=f32(0.97), real_threshold=f32(0.98), real_pixel=[(0.0, "r7")])
    assert d.status == [KEPT]


@pytest.mark.parametrize("min_score", [f32(0.25), f32(0.3)])
@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_low_quality_below_the_minimum_score_only(min_score, case):
    score = ulp_cases(min_score)[case]
    d = decide(["s0", "s1"], np.stack([basis(0), basis(1)]), threshold=f32(0.97), real_threshold=f32(0.98),
               scores=[score, None], min_score=min_score)
    # a missing score cannot pass a minimum
    assert d.status == [{"below": LOW_QUALITY, "at": KEPT, "above": KEPT}[case], LOW_QUALITY]


@pytest.mark.parametrize("keep", ["first", "quality"])
@pytest.mark.parametrize("first", [0, CHUNK - 1])
def test_identical_samples_keep_the_earliest_in_plan_order(keep, first):
    n = CHUNK + 2
    emb = np.stack(fillers(n, first=3))
    emb[first] = emb[first + 1] = emb[first + 2] = basis(0)  # three identical samples; the last two may cross a chunk
    scores = [0.5] * n  # equal scores: 'quality' falls back to plan order
    d = decide([f"s{i}" for i in range(n)], emb, f32(0.97), f32(0.98), scores=scores, keep=keep)
    assert [d.status[first + k] for k in range(3)] == [KEPT, DUPLICATE, DUPLICATE]
    assert d.nn_id[first + 1] == d.nn_id[first + 2] == f"s{first}"
    assert d.status.count(KEPT) == n - 2


def test_quality_policy_keeps_the_better_score_even_when_later():
    emb = np.stack([basis(0), basis(0), basis(1)])
    d = decide(["a", "b", "c"], emb, f32(0.97), f32(0.98), scores=[0.2, 0.3, 0.1], keep="quality")
    assert d.status == [DUPLICATE, KEPT, KEPT] and d.nn_id[0] == "b"


def test_a_real_copy_is_never_kept_as_the_original_of_a_duplicate():
    # s0 is blocked (a real copy), so s1, identical to it, has no kept synthetic neighbour: it is blocked too,
    # not dropped as a duplicate of a sample that is not in the dataset.
    real = VectorSet.build(["r0"], basis(0)[None])
    d = decide(["s0", "s1"], np.stack([basis(0), basis(0)]), f32(0.97), f32(0.98), real=real)
    assert d.status == [REAL_COPY, REAL_COPY]


@pytest.mark.parametrize("case", ["below", "at", "above"])
def test_a_closer_sample_of_the_same_chunk_beats_an_earlier_chunks(case):
    # q's neighbour in an earlier chunk is below the threshold; its neighbour in its own chunk is at the
    # boundary: the in-chunk comparison (a Gram matrix, not FAISS) decides, and names the neighbour.
    threshold = f32(0.97)
    cos = ulp_cases(threshold)[case]
    emb = np.stack([at_cosine(f32(0.965), to=0, other=1), *fillers(CHUNK - 1, first=3),
                    at_cosine(cos, to=0, other=2), basis(0)])
    d = decide([f"s{i}" for i in range(len(emb))], emb, threshold, real_threshold=1.0)
    q = CHUNK + 1
    assert d.status[CHUNK] == KEPT  # 0.965 * cos from s0: far below the threshold
    assert d.status[q] == EXPECT_AT_LEAST[case]
    nearest = ("s256", NN_RUN, cos) if case != "below" or cos > f32(0.965) else ("s0", NN_RUN, f32(0.965))
    assert (d.nn_id[q], d.nn_source[q], d.nn_similarity[q]) == nearest


def test_a_sample_without_a_score_loses_a_duplicate_pair_under_the_quality_policy():
    # Missing scores sort last: the scored sample wins although it comes later in plan order.
    d = decide(["a", "b"], np.stack([basis(0), basis(0)]), f32(0.97), f32(0.98), scores=[None, 0.1], keep="quality")
    assert d.status == [DUPLICATE, KEPT] and d.nn_id[0] == "b"


def test_an_ivf_search_that_finds_no_neighbour_is_no_neighbour():
    # An IVF index probing one empty cell answers id -1 (with a meaningless score): that is "nothing near".
    import faiss

    rng = np.random.default_rng(0)
    centre_a, centre_b = basis(0), basis(1)
    train = np.concatenate([centre_a + 0.01 * rng.normal(size=(50, DIM)), centre_b + 0.01 * rng.normal(size=(50, DIM))])
    train = (train / np.linalg.norm(train, axis=1, keepdims=True)).astype(np.float32)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, 2, faiss.METRIC_INNER_PRODUCT)
    ivf.train(train)
    ivf.add(train[:50])  # only cluster A is filled; cluster B's cell stays empty
    ivf.nprobe = 1
    earlier = VectorSet([f"old{i}" for i in range(50)], ivf)
    sims, ids = earlier.nearest(centre_b[None])
    assert ids == [None] and sims[0] == -np.inf
    d = decide(["new"], centre_b[None], f32(0.97), f32(0.98), earlier=earlier)
    assert d.status == [KEPT] and d.nn_id == [None] and d.nn_similarity == [None]
