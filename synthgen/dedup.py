"""Near-duplicate and memorisation decisions over CLIP embeddings in FAISS.

``decide`` is a pure function of (embeddings in plan order, the prior index,
the thresholds): it walks the plan in fixed-size chunks, independent of how
the samples were sharded or which worker made them, so the kept/dropped set
never depends on the execution layout.

Every sample gets evidence whether kept or not: its nearest neighbour over
all sources (id, source, similarity) and its nearest real sample, so any
other threshold can be applied later without re-embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from synthgen.records import DUPLICATE, KEPT, LOW_QUALITY, NN_DATASET, NN_REAL, NN_RUN, REAL_COPY

_CHUNK = 256  # fixed: part of the definition of "plan order"


@dataclass
class VectorSet:
    """Unit-length embeddings with their sample ids, searchable by cosine."""

    ids: list[str]
    index: faiss.Index

    @classmethod
    def build(cls, ids: list[str], embeddings: np.ndarray) -> "VectorSet":
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        index = faiss.IndexFlatIP(emb.shape[1])
        if len(emb):
            index.add(emb)
        return cls(list(ids), index)

    def nearest(self, queries: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Best similarity and id per query (-inf / None when empty)."""
        if self.index.ntotal == 0:
            return np.full(len(queries), -np.inf, dtype=np.float32), [None] * len(queries)
        sims, idx = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
        # An IVF search whose probed cells are all empty returns id -1 with a huge negative score.
        best = np.where(idx[:, 0] >= 0, sims[:, 0], -np.inf).astype(np.float32)
        return best, [self.ids[i] if i >= 0 else None for i in idx[:, 0]]


@dataclass
class Decisions:
    """Per-sample dedup outcome and evidence, in plan order."""

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


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


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
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = len(ids)
    real_sim, real_id = real.nearest(emb) if real else (np.full(n, -np.inf), [None] * n)
    ds_sim, ds_id = earlier.nearest(emb) if earlier else (np.full(n, -np.inf), [None] * n)
    run = VectorSet.build([], np.zeros((0, emb.shape[1] if emb.ndim == 2 else 1), np.float32))
    score = np.array([np.nan if s is None else s for s in scores], float) if scores is not None else np.full(n, np.nan)
    if keep == "quality":
        order = np.lexsort((np.arange(n), -np.nan_to_num(score, nan=-np.inf)))
    elif keep == "first":
        order = np.arange(n)
    else:
        raise ValueError(f"keep policy must be 'first' or 'quality', not {keep!r}")
    rows: list[tuple] = [()] * n

    for start in range(0, n, _CHUNK):
        pos = order[start : start + _CHUNK]
        block = emb[pos]
        run_sim, run_id = run.nearest(block)
        gram = block @ block.T
        kept_local: list[int] = []
        for i, g in enumerate(pos):
            best_run, best_run_id = float(run_sim[i]), run_id[i]
            if kept_local:
                j = max(kept_local, key=lambda k: gram[i, k])
                if gram[i, j] > best_run:
                    best_run, best_run_id = float(gram[i, j]), ids[pos[j]]
            candidates = [
                (best_run, best_run_id, NN_RUN),
                (float(ds_sim[g]), ds_id[g], NN_DATASET),
                (float(real_sim[g]), real_id[g], NN_REAL),
            ]
            sim, nid, src = max(candidates, key=lambda c: c[0])
            synth_sim = max(best_run, float(ds_sim[g]))
            pix, pix_id = real_pixel[g] if real_pixel else (None, None)
            if real_sim[g] >= real_threshold:
                status, reason = REAL_COPY, f"cosine {real_sim[g]:.4f} >= {real_threshold} to real sample {real_id[g]}"
            elif pixel_threshold is not None and pix is not None and pix <= pixel_threshold:
                status, reason = REAL_COPY, f"pixel distance {pix:.4f} <= {pixel_threshold} to real sample {pix_id}"
            elif min_score is not None and not score[g] >= min_score:
                status, reason = LOW_QUALITY, f"alignment score {score[g]:.4f} < {min_score}"
            elif synth_sim >= threshold:
                status, reason = DUPLICATE, f"cosine {sim:.4f} >= {threshold} to kept sample {nid} ({src})"
            else:
                status, reason = KEPT, None
                kept_local.append(i)
            ok = np.isfinite(sim)
            rows[g] = (status, reason, nid if ok else None, src if ok else None, _finite(sim), real_id[g],
                       _finite(real_sim[g]))
        if kept_local:
            run.index.add(np.ascontiguousarray(block[kept_local]))
            run.ids.extend(ids[pos[k]] for k in kept_local)
    out = Decisions()
    for r in rows:
        out.status.append(r[0])
        out.drop_reason.append(r[1])
        out.nn_id.append(r[2])
        out.nn_source.append(r[3])
        out.nn_similarity.append(r[4])
        out.real_nn_id.append(r[5])
        out.real_nn_similarity.append(r[6])
    return out
