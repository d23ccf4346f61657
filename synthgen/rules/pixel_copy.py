"""Memorisation guard, pixel side: block a sample whose pixels nearly copy a real image."""

from __future__ import annotations

from synthgen.records import REAL_COPY, Sample
from synthgen.rules.base import Rule, Verdict


class PixelRealCopy(Rule):
    """``blocked_real_copy`` when the guard's pixel distance is at most ``dedup.pixel_threshold``."""

    reads = "pixel_threshold"

    def check(self, s: Sample) -> Verdict | None:
        pix = s.real_pixel_distance
        if pix is None or not pix <= self.limit:
            return None
        return Verdict(REAL_COPY, f"pixel distance {pix:.4f} <= {self.limit} to real sample {s.real_pixel_nn_id}",
                       {"real_pixel_nn_id": s.real_pixel_nn_id, "real_pixel_distance": pix})
