"""Shard files no manifest names, and their removal (``synthgen gc``).

A commit writes its shards before its manifest. One that loses a race for a
version number builds on the new head and re-uses the shards it wrote, but
a writer killed between its uploads and its manifest (or a job abandoned
after it) leaves shard files that no manifest names. They are never read
(readers follow manifests, and a shard is named by its content, so nothing
can mistake one for another), only stored: ``verify`` notes them and
``collect_garbage`` removes those older than a grace period, so a commit in
progress elsewhere, whose manifest is not written yet, keeps its shards.

It also removes what a work pool's job staged on the store
(``_staging/<dataset>/<job digest>/``, ``catalog.layout.staging_key``) and
never committed: a driver that died and was not run again. A job's staging
goes whole, once even its newest object is past the grace period (a job
still running keeps adding shards there, and its driver refreshes a record
of its own there while it waits); a rerun after that generates the shards
again.

Works on any catalog root (a folder or a URL) through ``Storage.files``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime

from catalog.errors import IntegrityError
from catalog.layout import SHARDS, STAGING
from catalog.safe_paths import check_name
from catalog.storage import Storage

GRACE_S = 24 * 3600  # longer than any commit takes between its first upload and its manifest


@dataclass
class Garbage:
    """What a collection found (and, unless a dry run, removed)."""

    dataset: str
    named: int = 0  # shard files some manifest names
    unnamed: list[str] = field(default_factory=list)  # keys no manifest names
    removed: list[str] = field(default_factory=list)
    kept_young: list[str] = field(default_factory=list)  # unnamed, but younger than the grace period
    staged: list[str] = field(default_factory=list)  # job staging prefixes on the store
    staged_removed: list[str] = field(default_factory=list)


def named_shards(storage: Storage, name: str) -> set[str]:
    """Every shard key any manifest of ``name`` names, those past HEAD (a commit in progress) included.

    ``IntegrityError`` when a manifest cannot be read: its shards would look unnamed.
    """
    named: set[str] = set()
    for key in storage.glob(f"{check_name(name)}/versions/*.json"):
        data = storage.read(key)
        if data is None:
            continue
        try:
            named.update(f"{name}/{s['file']}" for s in json.loads(data).get("shards", []))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IntegrityError(f"{storage.where(key)}: not a readable manifest ({exc}); run synthgen verify "
                                 f"{name}") from None
    return named


def unnamed_shards(storage: Storage, name: str) -> list[str]:
    """Shard keys under ``name/shards/`` that no manifest names, sorted (``IntegrityError``: see ``named_shards``)."""
    return sorted(set(storage.glob(f"{check_name(name)}/{SHARDS}/*.parquet")) - named_shards(storage, name))


def _age_s(storage: Storage, key: str, now: float) -> float:
    modified = storage.files.modified(key)
    return now - (modified.timestamp() if isinstance(modified, datetime) else float(modified))


def staged_jobs(storage: Storage, name: str) -> dict[str, list[str]]:
    """Each job staging prefix of ``name`` on an object store (``_staging/<name>/<job>``) and the keys under it.

    A catalog in a folder has none (its jobs stage in the data folder): nothing is looked for there.
    """
    if storage.local:
        return {}
    jobs: dict[str, list[str]] = {}
    for key in storage.glob(f"{STAGING}/{check_name(name)}/*/*"):
        jobs.setdefault(key.rsplit("/", 1)[0], []).append(key)
    return dict(sorted(jobs.items()))


def _collect_staging(storage: Storage, name: str, older_than_s: float, dry_run: bool, found: Garbage) -> None:
    """Remove the keys of each job staging whose newest object is older than ``older_than_s``, one by one."""
    now = time.time()
    for prefix, keys in staged_jobs(storage, name).items():
        found.staged.append(prefix)
        try:
            young = min(_age_s(storage, k, now) for k in keys) < older_than_s
        except FileNotFoundError:  # its job committed meanwhile and removed it
            continue
        if young:
            continue
        if not dry_run:
            for key in keys:  # exactly those listed (a name is never read as a pattern), not what came since
                try:
                    storage.files.rm_file(key)
                except FileNotFoundError:
                    pass
        found.staged_removed.append(prefix)


def collect_garbage(storage: Storage, name: str, older_than_s: float = GRACE_S, dry_run: bool = False) -> Garbage:
    """Remove ``name``'s unnamed shard files and job staging older than ``older_than_s`` (``dry_run``: only list)."""
    found = Garbage(name, len(named_shards(storage, name)), unnamed_shards(storage, name))
    _collect_staging(storage, name, older_than_s, dry_run, found)
    now = time.time()
    named = named_shards(storage, name)  # read again just before removing: a manifest may have landed meanwhile
    for key in (k for k in found.unnamed if k not in named):
        if _age_s(storage, key, now) < older_than_s:
            found.kept_young.append(key)
            continue
        if not dry_run:
            storage.files.rm_file(key)
        found.removed.append(key)
    return found
