"""A cheap look at ``*.safetensors`` files: their header, not their tensors.

A safetensors file starts with an 8-byte little-endian header length, then
that many bytes of JSON naming each tensor's dtype, shape and byte range. A
damaged download or random bytes fail here in microseconds, instead of in
the loader after Prefect and MLflow have started. Read with plain Python:
the ``safetensors`` library would work too, but needs numpy or torch tensors
to open a file, and the checks run before either is imported.
"""

from __future__ import annotations

import json
from pathlib import Path

MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


def safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable safetensors file, or None when its header is sound."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                return f"only {len(prefix)} bytes, shorter than the 8-byte header length"
            n = int.from_bytes(prefix, "little")
            if n > min(size - 8, MAX_HEADER_BYTES):
                return f"its header length ({n} bytes) does not fit in the file ({size} bytes)"
            raw = f.read(n)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            return f"tensor {name!r} has no valid data_offsets in its header"
        end = max(end, offsets[1])
    if end > size - 8 - n:
        return f"its tensors need {end} bytes but the file holds {size - 8 - n}; it is truncated"
    return None
