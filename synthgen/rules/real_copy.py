"""Memorisation guard, CLIP side: block a sample CLIP-close to a real one."""

from __future__ import annotations

import numpy as np

from synthgen.records import REAL_COPY, Sample
from synthgen.rules.base import Rule, Verdict


class ClipRealCopy(Rule):
    """``blocked_real_copy`` when the cosine to the nearest real sample reaches ``dedup.real_threshold``."""

    reads = "real_threshold"

    def check(self, s: Sample) -> Verdict | None:
        sim = s.real_nn_similarity
        # Compared in float32, the similarity's own precision (NumPy rounds the threshold to it),
        # so a sample exactly at the threshold is decided as it always was.
        if sim is not None and np.float32(sim) >= self.limit:
            return Verdict(REAL_COPY, f"cosine {sim:.4f} >= {self.limit} to real sample {s.real_nn_id}",
                           {"real_nn_id": s.real_nn_id, "real_nn_similarity": sim})
        return None
