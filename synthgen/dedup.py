"""Near-duplicate and memorisation decisions over CLIP embeddings in FAISS.

``NearDuplicatePass`` is the decision stage: the per-sample rules
(``synthgen.rules``), then the stateful near-duplicate pass. It is a pure
function of (embeddings in plan order, the prior index, the rules and
threshold): it walks the plan in fixed-size chunks, independent of how
the samples were sharded or which worker made them, so the kept/dropped set
never depends on the execution layout.

Every sample gets evidence whether kept or not: its nearest neighbour over
all sources (id, source, similarity) and its nearest real sample, so any
other threshold can be applied later without re-embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from synthgen.records import DUPLICATE, KEPT, NN_DATASET, NN_REAL, NN_RUN, Sample
from synthgen.rules import Rule, Verdict
from synthgen.rules.alignment import LowAlignment
from synthgen.rules.pixel_copy import PixelRealCopy
from synthgen.rules.real_copy import ClipRealCopy
from synthgen.vector_set import VectorSet
from synthgen.within_job import EXACT_SCAN_LIMIT, float32_floor, resolve

_SOURCES = (NN_RUN, NN_DATASET, NN_REAL)
KEEP_POLICIES = ("first", "quality")


def _or_none(x: np.ndarray) -> list[float | None]:
    """Python floats, None where not finite (no neighbour)."""
    return [v if math.isfinite(v) else None for v in np.asarray(x, dtype=np.float64).tolist()]


class NearDuplicatePass:
    """Decides every sample's status and evidence, writing them into the samples.

    1. Each sample's nearest real sample (CLIP) is looked up in ``real``.
    2. The ``rules`` are tried in order; the first verdict decides the sample.
    3. The rest are visited in plan order (``keep='first'``) or by descending
       CLIP score, ties in plan order (``keep='quality'``): a sample whose
       similarity to a kept sample of this run or of ``earlier`` (a prior
       version) reaches ``threshold`` is ``dropped_duplicate``, else kept and
       added to the run's index. Rule-decided samples still get their
       nearest-neighbour evidence, but are never added.

    ``before`` (``keep='first'`` only): the kept samples of this run that come
    before these in plan order (earlier shards of the job, already decided).
    Deciding a job shard by shard, each with ``before`` = the kept samples of
    the shards before it, gives the decisions of one pass over the whole job:
    a match in ``before`` counts as the run's, and wins ties (it is earlier).
    """

    def __init__(self, threshold: float, rules: Sequence[Rule] = (), earlier: VectorSet | None = None,
                 real: VectorSet | None = None, keep: str = "first", exact_limit: int = EXACT_SCAN_LIMIT,
                 before=None):
        if keep not in KEEP_POLICIES:
            raise ValueError(f"keep policy must be 'first' or 'quality', not {keep!r}")
        if before is not None and keep != "first":
            raise ValueError("deciding shard by shard (before=...) needs keep='first': 'quality' visits the whole job")
        self.threshold, self.rules, self.earlier, self.real, self.keep = threshold, list(rules), earlier, real, keep
        self.exact_limit, self.before = exact_limit, before

    def _verdict(self, s: Sample) -> Verdict | None:
        for rule in self.rules:
            v = rule.check(s)
            if v is not None:
                return v
        return None

    def __call__(self, samples: list[Sample]) -> None:
        n = len(samples)
        if n == 0:
            return
        emb = np.array([s.embedding for s in samples], dtype=np.float32)
        real_sim, real_id = self.real.nearest(emb) if self.real else (np.full(n, -np.inf), [None] * n)
        real_sim = np.asarray(real_sim, dtype=np.float32)
        for s, sim, rid in zip(samples, _or_none(real_sim), real_id):
            s.real_nn_id, s.real_nn_similarity = rid, sim
        verdicts = [self._verdict(s) for s in samples]
        ds_sim, ds_id = self.earlier.nearest(emb) if self.earlier else (np.full(n, -np.inf), [None] * n)
        ds_sim = np.asarray(ds_sim, dtype=np.float32)
        ruled = np.array([v is not None for v in verdicts])
        floor = float32_floor(self.threshold)
        before_sim, before_id = self.before.nearest(emb) if self.before else (np.full(n, -np.inf), [None] * n)
        before_sim = np.asarray(before_sim, dtype=np.float32)
        # A sample near an earlier kept one of this run (before) is a duplicate and never keeps another out.
        eligible = ~ruled & ~(ds_sim >= floor) & ~(before_sim >= floor)
        if self.keep == "quality":
            score = np.array([np.nan if s.clip_score is None else s.clip_score for s in samples], float)
            order = np.lexsort((np.arange(n), -np.nan_to_num(score, nan=-np.inf)))
            res = resolve(emb[order], eligible[order], self.threshold, exact_limit=self.exact_limit)
        else:  # visit order is plan order: no reordered copy of the embeddings
            order = np.arange(n)
            res = resolve(emb, eligible, self.threshold, exact_limit=self.exact_limit)
        self.run_result = res
        del emb
        # Back from visit order to plan order.
        run_sim = np.empty(n, np.float32)
        run_sim[order] = res.best_sim
        run_pos = np.empty(n, np.int64)
        run_pos[order] = np.where(res.best_pos >= 0, order[np.maximum(res.best_pos, 0)], -1)
        # The run's nearest kept sample: one of ``before`` on ties, as the earlier position wins in ``resolve``.
        from_before = np.isfinite(before_sim) & (before_sim >= run_sim)
        run_sim = np.where(from_before, before_sim, run_sim)
        kept = np.empty(n, bool)
        kept[order] = res.kept
        # Nearest over all sources; on equal similarity run beats dataset beats real (the order they are listed).
        src = np.where(run_sim >= np.maximum(ds_sim, real_sim), 0, np.where(ds_sim >= real_sim, 1, 2))
        best = np.choose(src, [run_sim, ds_sim, real_sim])
        sid = [s.sample_id for s in samples]
        # One loop writing plain Python values (lists, not numpy scalars): this is the per-sample part left.
        for s, k, sim, kp, v, p, fb, bid, did, rid in zip(samples, src.tolist(), best.tolist(), kept.tolist(),
                                                          verdicts, run_pos.tolist(), from_before.tolist(),
                                                          before_id, ds_id, real_id):
            run_id = bid if fb else (sid[p] if p >= 0 else None)
            nid = run_id if k == 0 else (did if k == 1 else rid)
            if v is not None:
                s.status, s.drop_reason = v.status, v.reason
            elif not kp:
                s.status = DUPLICATE
                s.drop_reason = f"cosine {sim:.4f} >= {self.threshold} to kept sample {nid} ({_SOURCES[k]})"
            else:
                s.status, s.drop_reason = KEPT, None
            s.nn_id, s.nn_source, s.nn_similarity = (nid, _SOURCES[k], sim) if math.isfinite(sim) else (None, None, None)


@dataclass
class Decisions:
    """Per-sample dedup outcome and evidence, in plan order (what ``decide`` returns)."""

    status: list[str] = field(default_factory=list)
    drop_reason: list[str | None] = field(default_factory=list)
    nn_id: list[str | None] = field(default_factory=list)
    nn_source: list[str | None] = field(default_factory=list)
    nn_similarity: list[float | None] = field(default_factory=list)
    real_nn_id: list[str | None] = field(default_factory=list)
    real_nn_similarity: list[float | None] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status:
            out[s] = out.get(s, 0) + 1
        return out


def decide(
    ids: list[str],
    embeddings: np.ndarray,
    threshold: float,
    real_threshold: float,
    earlier: VectorSet | None = None,
    real: VectorSet | None = None,
    real_pixel: list[tuple[float | None, str | None]] | None = None,
    pixel_threshold: float | None = None,
    scores: list[float | None] | None = None,
    min_score: float | None = None,
    keep: str = "first",
) -> Decisions:
    """Decide each sample's status, in plan order, with its evidence.

    A sample is ``blocked_real_copy`` when its cosine similarity to a real
    sample reaches ``real_threshold``, or when ``real_pixel`` (per-sample
    (distance, real id) from the pixel guard) is at most ``pixel_threshold``;
    else ``low_quality`` when its alignment score is below ``min_score``; else
    ``dropped_duplicate`` when its similarity to a kept sample (of this run or
    an earlier version) reaches ``threshold``; else kept.

    ``keep='first'``: the earliest sample in plan order wins a duplicate pair.
    ``keep='quality'``: samples are visited by descending score (ties in plan
    order), so the better-aligned one wins. Both are pure functions of the inputs.
    This is ``NearDuplicatePass`` over arrays, for callers without ``Sample`` records.
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    samples = [Sample(sample_id=i, origin="synthetic", embedding=emb[k]) for k, i in enumerate(ids)]
    for k, s in enumerate(samples):
        s.clip_score = scores[k] if scores is not None else None
        s.real_pixel_distance, s.real_pixel_nn_id = real_pixel[k] if real_pixel else (None, None)
    rules: list[Rule] = [ClipRealCopy(real_threshold)]
    rules += [PixelRealCopy(pixel_threshold)] if pixel_threshold is not None else []
    rules += [LowAlignment(min_score)] if min_score is not None else []
    NearDuplicatePass(threshold, rules, earlier, real, keep)(samples)
    out = Decisions()
    for s in samples:
        out.status.append(s.status)
        out.drop_reason.append(s.drop_reason)
        out.nn_id.append(s.nn_id)
        out.nn_source.append(s.nn_source)
        out.nn_similarity.append(s.nn_similarity)
        out.real_nn_id.append(s.real_nn_id)
        out.real_nn_similarity.append(s.real_nn_similarity)
    return out
