"""The memorisation guard's reference data, built inside the catalog.

The pixel guard needs the real images, but only as standardised thumbnails
it compares against; it never hands an image or row out. So it is built
here from the rows directly, and a restricted real dataset guards synthetic
jobs without ``allow_restricted`` (see ``catalog.access``).
"""

from __future__ import annotations

from catalog.version import DatasetVersion, _read
from synthgen.imaging import decode
from synthgen.memorisation import PixelGuard


def pixel_guard(version: DatasetVersion) -> PixelGuard:
    """A ``PixelGuard`` over the kept rows of ``version`` (restricted or not)."""
    t = _read(version, ["sample_id", "image"], "kept", None)
    images = [decode(b) for b in t["image"].combine_chunks().field("bytes").to_pylist()]
    return PixelGuard(t["sample_id"].to_pylist(), images)
