"""Paths built from data stay inside their destination: one check for every writer.

An export writes ``<dest>/<label_name>/<sample_id>.png``; both names come
from rows, and rows come from job specs and pulled catalogs that someone else
may have written. ``confined`` joins such names onto a destination only when
each is a single plain file or folder name (``synthgen.path_names``) and the
result, with symlinks resolved, is still under the destination.
"""

from __future__ import annotations

from pathlib import Path

from synthgen.path_names import component_problem


class UnsafePathError(ValueError):
    """A name taken from data would place a file outside its destination folder."""


def confined(dest: str | Path, *parts: str) -> Path:
    """``dest / part / ...``, refusing any part that could leave ``dest``.

    Each part must be one name: not empty, ``.`` or ``..``, no ``/`` or ``\\``
    (so no absolute path), no NUL or other control character. Whatever
    already exists on the way (a symlinked folder, a planted link at the file's
    name) must resolve inside ``dest`` too. Raises ``UnsafePathError`` naming
    the part and the destination; nothing is created.
    """
    base = Path(dest)
    for part in parts:
        problem = component_problem(part)
        if problem:
            raise UnsafePathError(f"{part!r} {problem}: refusing to write it as a path under {base}")
    path = base.joinpath(*parts)
    root = base.resolve()
    real = path.resolve()  # follows every link that exists on the way, also a link at the final name
    if real != root and not real.is_relative_to(root):
        raise UnsafePathError(f"{path} resolves to {real}, outside {base} (a symbolic link on the way?): "
                              "refusing to write there")
    return path
