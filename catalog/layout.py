"""The catalog's on-disk layout, defined once.

Keys are relative to the catalog root with ``/`` separators, so the same
key names a file in a local folder, under ``s3://bucket/prefix`` or in a
DVC revision; the local ``Catalog``, the shared catalog (``remote``,
``publish``), DVC reads (``dvc_io``) and audit all build their paths here::

    <name>/HEAD                     the current version number and its manifest's sha256
    <name>/shards/<sha256>.parquet  immutable, content-addressed row files
    <name>/versions/000003.json     manifest of version 3 (never rewritten)
    <name>/versions/000003/         files derived from a version (grid, card, id list)
"""

from __future__ import annotations

import re

from catalog.errors import IntegrityError

SHARDS = "shards"  # a dataset's folder of row files
# Jobs' staging at a catalog on object storage: what workers leave for the job's driver. Dataset names
# start with a letter or digit, so this prefix never meets a dataset.
STAGING = "_staging"


def head_key(name: str) -> str:
    """The key of a dataset's HEAD."""
    return f"{name}/HEAD"


def manifest_key(name: str, version: int) -> str:
    """The key of a version's manifest (``name/versions/000003.json``)."""
    return f"{name}/versions/{version:06d}.json"


def version_dir_key(name: str, version: int) -> str:
    """The key prefix of a version's derived files (``name/versions/000003``)."""
    return f"{name}/versions/{version:06d}"


def staging_key(name: str, job: str) -> str:
    """The key prefix of a job's staging at a catalog on object storage (``_staging/name/<job digest>``)."""
    return f"{STAGING}/{name}/{job}"


def shard_file(digest: str) -> str:
    """A shard's path relative to its dataset, as manifests record it."""
    return f"{SHARDS}/{digest}.parquet"


def head_line(version: int, sha256: str) -> bytes:
    """HEAD's content: the version number and the sha256 that seals its manifest."""
    return f"{version} {sha256}\n".encode()


HEAD_MAX_BYTES = 128  # "N sha256\n" is at most 75 bytes: a reader never takes in more than this
_HEAD_RE = re.compile(rb"([1-9][0-9]{0,8}) ([0-9a-f]{64})\n?")


def parse_head(data: bytes | str | None, where: str = "HEAD") -> tuple[int, str | None]:
    """HEAD's "N sha256" as (N, sha256); (0, None) when there is no HEAD file yet.

    Anything else (empty, no hash, a number past 9 digits, trailing bytes) is
    ``IntegrityError``: a HEAD without its hash seals nothing, and a huge
    version number would make a reader walk that many manifests.
    """
    if data is None:
        return 0, None
    raw = data.encode() if isinstance(data, str) else data
    match = _HEAD_RE.fullmatch(raw[:HEAD_MAX_BYTES + 1])
    if match is None:
        shown = raw[:80].decode("ascii", "replace").strip() or "empty"
        raise IntegrityError(f"{where}: malformed ({shown!r}); it must be 'VERSION SHA256' as a commit writes it. "
                             "The catalog is CORRUPT: restore HEAD from a backup")
    return int(match.group(1)), match.group(2).decode()
