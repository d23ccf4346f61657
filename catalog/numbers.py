"""Numbers as people read them: a float32 value without float64's noise.

Similarities and thresholds are stored as float32. Read back as Python
floats they print as ``0.9800000190734863``: the float64 nearest the
float32, not the number anyone wrote. Every place that shows values (the
CLI, audit, dataset cards) formats them here.
"""

from __future__ import annotations

import math

import numpy as np


def shortest_text(value: object) -> str:
    """``value`` as text; a float as the shortest decimal that reads back to the same value.

    A float that a float32 holds exactly (every float32 read back as a float)
    is written as the shortest decimal that round-trips that float32
    (``0.98``, not ``0.9800000190734863``); any other float as Python's own
    shortest repr. That text still reads back to the stored float32 bit for
    bit. Other values: ``str``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, np.floating)):
        return str(value)
    f = float(value)
    if isinstance(value, np.float32) or (math.isfinite(f) and float(np.float32(f)) == f):
        return str(np.float32(f))
    return repr(f)
