"""Paths built from data, checked against the folder they must stay in.

Dataset names, class names, sample ids and manifest entries come from job
specs, pulled catalogs and files a user did not write. Any of them turned
into a path can climb out of its destination (``..``, an absolute path, a
symlink that points elsewhere, a NUL byte, a separator inside a name).
Every writer and reader that joins data into a path goes through
``confined``; names are checked where they enter with ``check_name``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from catalog.errors import CatalogError
from synthgen.path_names import component_problem

# Dataset names: lowercase letters, digits, '.', '_', '-'; fullmatch, so a trailing newline is refused too.
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


class UnsafePathError(CatalogError):
    """A path built from data would leave its destination folder."""


def check_name(name: str, what: str = "dataset name") -> str:
    """``name`` when it is a valid dataset name, else ``CatalogError`` (``re.fullmatch``: no trailing newline)."""
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise CatalogError(f"invalid {what} {name!r} (use lowercase letters, digits, '.', '_', '-'; "
                           "start with a letter or digit; at most 64 characters)")
    return name


def view_base(name: str) -> str:
    """A dataset's name as a SQL view name (``catalog.query``): '-' and '.' become '_'."""
    return re.sub(r"[^a-z0-9_]", "_", name)


def check_part(part: str, what: str = "path component") -> str:
    """One path component taken from data (``synthgen.path_names``: not empty, '.' or '..', no separator,
    NUL or other control character, at most 255 bytes); ``UnsafePathError`` naming the problem otherwise."""
    problem = component_problem(part)
    if problem:
        raise UnsafePathError(f"refusing {what} {part!r}: it {problem}; it must be one plain name, not a path")
    return part


def confined(dest: str | Path, *parts: str) -> Path:
    """``dest / part / ...`` when it stays inside ``dest``; ``UnsafePathError`` otherwise.

    Each part must be a plain name (``check_part``: no ``..``, separators,
    NUL, absolute path), and the resolved result (symlinks followed, for the
    parts that exist) must still lie under the resolved ``dest``, so a
    symlink planted inside ``dest`` cannot lead a write out of it.
    """
    base = Path(dest)
    if "\0" in str(base):  # the parts are checked one by one below (a NUL is a control character)
        raise UnsafePathError(f"refusing a destination with a NUL byte: {base!r}")
    path = base.joinpath(*(check_part(p) for p in parts))
    root = os.path.realpath(base)
    real = os.path.realpath(path)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(f"refusing {path}: it resolves to {real}, outside {root}")
    return path


def confined_relative(dest: str | Path, rel: str, what: str = "path") -> Path:
    """``dest / rel`` for a '/'-separated relative path taken from data (e.g. a manifest's ``shards/x.parquet``)."""
    if not isinstance(rel, str) or rel.startswith("/") or "\\" in rel:
        raise UnsafePathError(f"refusing {what} {rel!r}: not a relative path inside {dest}")
    try:
        return confined(dest, *rel.split("/"))
    except UnsafePathError as exc:
        raise UnsafePathError(f"refusing {what} {rel!r}: {exc}") from None
