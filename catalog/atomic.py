"""Atomic file writes: a temp name that names its writer, fsync, then rename.

Every catalog write goes through here, so a reader never sees a partial
file and a later writer can tell a dead writer's leftovers from a live
one's (``Catalog.cleanup_stale``).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthgen.failpoints import failpoint

TMP_PREFIX = ".tmp-"
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)[:40] or "host"


def fsync_dir(path: Path) -> None:
    """fsync a folder, so a rename into it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A temporary sibling of ``path`` that names its writer (host and pid).

    Readers never open temp names; naming the writer lets a later commit
    remove what a killed writer left behind without touching the files of
    a writer that is still running (see ``Catalog.cleanup_stale``).
    """
    return path.parent / f"{TMP_PREFIX}{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:16]}-{path.name}"


def writer_is_gone(tmp: Path, max_age_s: float) -> bool:
    """True when the writer of a temp file is dead: its pid is gone on this host, or the file is old."""
    host, _, rest = tmp.name[len(TMP_PREFIX):].partition(".")
    pid = rest.split(".", 1)[0]
    if host == _HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:  # another host's (or an old-style) temp file: only age says its writer is gone
        return time.time() - tmp.stat().st_mtime > max_age_s
    except FileNotFoundError:
        return False


def atomic_write(path: Path, data: bytes, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename.

    ``exclusive`` refuses to replace an existing file (used for manifests,
    which are immutable): it links the temp file into place, which fails if
    the target exists, instead of renaming over it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        if exclusive:
            os.link(tmp, path)  # raises FileExistsError instead of overwriting
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_synced(tmp: Path, path: Path) -> None:
    """Move a finished temp file into place: fsync it, rename it over ``path``, fsync the folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file under a temp name and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=4096)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        failpoint("parquet-write", path.name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
