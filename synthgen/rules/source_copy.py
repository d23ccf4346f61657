"""Memorisation guard, real-image guidance: block a sample whose pixels nearly copy its own init image.

A sample started from a real image (``conditioning.init_images``) resembles
it by design; only one within the copy threshold (``dedup.pixel_threshold``,
the guard's pixel distance) is a copy, and it is blocked like any other.
The source need not be in ``dedup.real_dataset``: the distance is measured
to the source itself.
"""

from __future__ import annotations

from synthgen.records import REAL_COPY, Sample
from synthgen.rules.base import Rule, Verdict


class SourceCopy(Rule):
    """``blocked_real_copy`` when ``init_distance`` is at most ``dedup.pixel_threshold``."""

    reads = "pixel_threshold"

    def check(self, s: Sample) -> Verdict | None:
        dist = s.init_distance
        if dist is None or not dist <= self.limit:
            return None
        return Verdict(REAL_COPY, f"pixel distance {dist:.4f} <= {self.limit} to its init image {s.init_image_id}",
                       {"init_image_id": s.init_image_id, "init_distance": dist})
