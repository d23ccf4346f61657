"""Whether a string can be one path component: a file or folder name that stays where it is put.

Class names become export folders (``<dest>/<class>/<sample_id>.png``) and
sample ids file names; both come from data (a job spec, a pulled catalog).
One rule, used where names enter (the job spec) and again where paths are
built (``catalog.safe_paths.confined``).
"""

from __future__ import annotations

import unicodedata

MAX_COMPONENT_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, APFS and NTFS (in UTF-8 bytes or UTF-16 units)


def component_problem(name: object) -> str | None:
    """Why ``name`` cannot be a single file or folder name, or None when it can.

    Refused: a non-string, the empty string, ``.`` and ``..``, a path
    separator (``/`` or ``\\``, so an absolute path too), NUL and every other
    control character (terminal escapes included), and more than 255 bytes.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return f"is {name!r}, a folder reference"
    if "/" in name or "\\" in name:
        return "contains a path separator ('/' or '\\')"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        return "contains a control character"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
        return f"is longer than {MAX_COMPONENT_BYTES} bytes"
    return None
