"""Quality: drop degenerate images (near-constant, washed-out or blurry).

Diffusion models at low step counts, or behind a safety checker (which
returns black frames), produce images with no content. Two measurements on
the grey levels (0-255) of the stored image catch them:

* pixel spread: the 99th minus the 1st percentile, low for a blank,
  near-constant or washed-out image (a few hot pixels do not count);
* variance of the Laplacian (4-neighbour, inside the border): the usual
  focus measure, low for a blurry or flat image.

Both depend on the image size and content: the defaults block blanks and a
16 px digit under a 2 px Gaussian blur (60), while every demo and real digit measures far
above them (all 1,000 demo samples: Laplacian variance >= 630, spread >= 173).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from synthgen.records import LOW_QUALITY, Sample
from synthgen.rules.base import Rule, Verdict


class DegenerateLimits(BaseModel):
    """``dedup.degenerate``: below either minimum an image is ``low_quality``; ``{}`` takes the defaults."""

    # strict: lax mode would read `true` as 1.0 (the spec's own models refuse booleans for numbers too)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    min_pixel_spread: float = Field(32.0, ge=0.0, le=255.0, description="grey levels between the 1st and 99th percentile")
    min_laplacian_var: float = Field(100.0, ge=0.0, description="variance of the Laplacian of the grey levels")


class Degenerate(Rule):
    """``low_quality`` when an image is near-constant, washed-out or blurry (``dedup.degenerate``)."""

    reads = "degenerate"
    spec_field = (DegenerateLimits | None, Field(None, description="drop near-constant, washed-out or blurry "
                  "images (pixel spread and variance of the Laplacian); null disables"))
    evidence = ("pixel_spread", "laplacian_var")

    @staticmethod
    def measure(image: Image.Image) -> dict[str, float]:
        g = np.asarray(image.convert("L"), dtype=np.float32)
        lo, hi = np.percentile(g, [1, 99])
        lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
        return {"pixel_spread": float(hi - lo), "laplacian_var": float(lap.var()) if lap.size else 0.0}

    def check(self, s: Sample) -> Verdict | None:
        spread, lap = s.measures.get("pixel_spread"), s.measures.get("laplacian_var")
        evidence = {"pixel_spread": spread, "laplacian_var": lap}
        if spread is not None and spread < self.limit.min_pixel_spread:
            return Verdict(LOW_QUALITY, f"degenerate image: pixel spread {spread:.1f} < "
                           f"{self.limit.min_pixel_spread} (near-constant or washed-out)", evidence)
        if lap is not None and lap < self.limit.min_laplacian_var:
            return Verdict(LOW_QUALITY, f"degenerate image: variance of the Laplacian {lap:.1f} < "
                           f"{self.limit.min_laplacian_var} (blurry or flat)", evidence)
        return None  # no measurement (a row stored before this rule existed) is not evidence against it
