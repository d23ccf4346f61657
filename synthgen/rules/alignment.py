"""Quality: drop a sample whose CLIP alignment with its caption is too low."""

from __future__ import annotations

from synthgen.records import LOW_QUALITY, Sample
from synthgen.rules.base import Rule, Verdict


class LowAlignment(Rule):
    """``low_quality`` when the image-caption cosine is below ``dedup.min_clip_score`` (or missing)."""

    reads = "min_clip_score"

    def check(self, s: Sample) -> Verdict | None:
        score = float("nan") if s.clip_score is None else s.clip_score
        if score >= self.limit:  # a missing score (nan) fails: it cannot show alignment
            return None
        return Verdict(LOW_QUALITY, f"alignment score {score:.4f} < {self.limit}", {"clip_score": s.clip_score})
