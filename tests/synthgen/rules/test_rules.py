import numpy as np

from synthgen.dedup import NearDuplicatePass, decide
from synthgen.vector_set import VectorSet
from synthgen.records import DUPLICATE, KEPT, LOW_QUALITY, REAL_COPY, Sample
from synthgen.rules import RULES, build_rules
from synthgen.rules.alignment import LowAlignment
from synthgen.rules.pixel_copy import PixelRealCopy
from synthgen.rules.real_copy import ClipRealCopy
from synthgen.rules.source_copy import SourceCopy
from synthgen.spec import DedupSpec


def test_each_rule_reads_its_own_field_and_a_null_turns_it_off():
    on = build_rules(DedupSpec(real_threshold=0.9, pixel_threshold=0.2, min_clip_score=0.1))
    assert [type(r) for r in on[:4]] == [ClipRealCopy, PixelRealCopy, SourceCopy, LowAlignment]
    assert [r.limit for r in on[:4]] == [0.9, 0.2, 0.2, 0.1]  # a copy of its own init image: the pixel threshold
    off = build_rules(DedupSpec(pixel_threshold=None, min_clip_score=None))
    assert not {PixelRealCopy, SourceCopy, LowAlignment} & set(map(type, off))
    assert all(r.reads in DedupSpec.model_fields for r in RULES)


def test_verdicts_carry_status_reason_and_evidence():
    s = Sample("a", "synthetic", real_nn_id="r1", real_nn_similarity=0.97, real_pixel_nn_id="r2",
               real_pixel_distance=0.1, clip_score=0.05)
    v = ClipRealCopy(0.95).check(s)
    assert (v.status, v.evidence["real_nn_id"]) == (REAL_COPY, "r1") and "0.9700 >= 0.95" in v.reason
    v = PixelRealCopy(0.24).check(s)
    assert (v.status, v.evidence["real_pixel_distance"]) == (REAL_COPY, 0.1) and "r2" in v.reason
    v = LowAlignment(0.2).check(s)
    assert v.status == LOW_QUALITY and v.evidence == {"clip_score": 0.05}
    assert ClipRealCopy(0.98).check(s) is None and PixelRealCopy(0.05).check(s) is None
    assert LowAlignment(0.2).check(Sample("b", "synthetic")).status == LOW_QUALITY  # no score: cannot pass
    # at exactly the threshold, in the similarity's float32 precision, a real copy is blocked
    at = Sample("c", "synthetic", real_nn_similarity=float(np.float32(0.95)))
    assert ClipRealCopy(0.95).check(at).status == REAL_COPY


def test_the_pass_writes_decisions_into_samples_like_decide():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(40, 16)).astype(np.float32)
    emb[5] = emb[3] + 0.01  # a near-duplicate
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    real = VectorSet.build(["real-0"], emb[7:8] + 0.001)
    scores = list(rng.uniform(0, 0.5, 40))
    samples = [Sample(f"s{i}", "synthetic", embedding=emb[i], clip_score=scores[i]) for i in range(40)]
    NearDuplicatePass(0.95, [ClipRealCopy(0.95), LowAlignment(0.05)], None, real)(samples)
    d = decide([s.sample_id for s in samples], emb, 0.95, 0.95, real=real, scores=scores, min_score=0.05)
    assert [s.status for s in samples] == d.status and [s.drop_reason for s in samples] == d.drop_reason
    assert [s.nn_id for s in samples] == d.nn_id and [s.real_nn_similarity for s in samples] == d.real_nn_similarity
    assert samples[7].status == REAL_COPY and samples[5].status == DUPLICATE and samples[3].status == KEPT
    assert {s.status for s in samples if s.clip_score < 0.05} <= {LOW_QUALITY, REAL_COPY}
