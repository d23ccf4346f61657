"""Output paths given to commands (export's destination, ``--sheet``, ``--png``), checked before any work is done.

One rule for all of them: an empty value, a folder where a file is wanted
(or the reverse), a file standing where a folder of the path should be, a
missing folder, or the wrong extension is one ``error:`` line naming the
option, before a version is read or a model loads. Values arrive as ``str``,
not ``Path``: ``Path("")`` is ``.``, so an empty value would become the
current folder.
"""

from __future__ import annotations

from pathlib import Path

from flows.cli.common import fail


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (writing would fail there), else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _nonempty(value: str, what: str) -> Path:
    if not value.strip():
        fail(f"{what} is empty; give a path")
    path = Path(value)
    blocker = _file_in_the_way(path)
    if blocker is not None:
        fail(f"{what} {path}: {blocker} is a file, not a folder")
    return path


def output_file(value: str, what: str, suffix: str | None = None, replace: bool = True) -> Path:
    """A file to write: in an existing folder, ending in ``suffix`` (any case), not a folder.

    ``replace=False``: an existing file is refused too (data a user may not
    want lost; reports and pictures are simply written again).
    """
    path = _nonempty(value, what)
    if suffix is not None and path.suffix.lower() != suffix:
        fail(f"{what} {path}: must be a {suffix} file")
    if path.is_dir():
        fail(f"{what} {path}: is a folder; give a file path")
    if not path.parent.is_dir():
        fail(f"{what} {path}: folder {path.parent} does not exist")
    if not replace and (path.exists() or path.is_symlink()):
        fail(f"{what} {path}: already exists; remove it or give a new file")
    return path


def output_folder(value: str, what: str, hint: str = "give a folder", empty: bool = False) -> Path:
    """A folder to write into: it may exist (as a folder) or be created; a file in its place is refused.

    ``empty=True``: an existing folder must hold nothing. An export into a
    folder an earlier one wrote would mix the two (stale images or Parquet
    shards that a loader's glob picks up beside the new ones).
    """
    path = _nonempty(value, what)
    if path.exists() and not path.is_dir():
        fail(f"{what} {path}: is a file; {hint}")
    if empty and path.is_dir() and any(path.iterdir()):
        fail(f"{what} {path}: already holds files (an earlier export?); give a new or empty folder")
    return path
