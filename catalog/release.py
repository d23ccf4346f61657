"""Releasing a restricted synthetic dataset: an explicit, recorded decision that its rows may be read.

Rows made from restricted real images (``conditioning.init_images``) land in
a restricted dataset (``catalog.init_source``). Lifting that is a person's
decision, not a side effect: ``release`` commits a new version with the same
rows whose manifest (inside the hash chain) records who decided, why, when
and which real sets the rows came from, and marks the dataset open. Excluded
rows that copy a restricted image stay withheld (``catalog.access``); a later
job deriving from a restricted set cannot add rows to the released dataset
(``Catalog.create`` refuses restricted rows into an open one).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow.parquet as pq

from catalog.manifest import Manifest
from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError
from catalog.version import parse_ref

__all__ = ["release"]


def _sources(cat: Catalog, name: str, manifest: Manifest) -> list[str]:
    """The real datasets (NAME@V) the version's rows started from."""
    found: set[str] = set()
    for ref in manifest.shards:
        t = pq.read_table(cat.verified_shard(name, ref), columns=["init_dataset", "init_version"], schema=SCHEMA)
        for d, v in zip(t["init_dataset"].to_pylist(), t["init_version"].to_pylist()):
            if d is not None:
                found.add(f"{d}@{v}")
    return sorted(found)


def release(cat: Catalog, ref: str, by: str, reason: str) -> Manifest:
    """Release restricted synthetic dataset ``ref`` (NAME or NAME@HEAD): a new, open version recording who and why.

    ``NAME@V`` must name the head: what is released is what the person saw.
    """
    if not by.strip() or not reason.strip():
        raise CatalogError("release needs --by (who decided) and --reason (why), both non-empty; they are "
                           "recorded in the new version's manifest")
    name, version = parse_ref(ref)
    info = cat.info(name)  # an unknown name fails here, before the lock creates its folder
    if info["origin"] == "real":
        raise CatalogError(f"{name!r} is a real dataset: release is for synthetic rows derived from one; a real "
                           "set's restriction is its owner's (ingest it again without --restricted)")
    if not info.get("restricted"):
        raise CatalogError(f"{name!r} is not restricted; nothing to release")
    with cat.lock(name):
        head = cat.head(name)
        if head is None:
            raise CatalogError(f"{name!r} has no versions yet; nothing to release")
        if version is not None and version != head:
            raise CatalogError(f"{name}@{version} is not the head ({name}@{head}): release the head, having "
                               "looked at what it holds")
        parent = cat.manifest(name, head)
        record = {"by": by, "reason": reason, "at": datetime.now(timezone.utc).isoformat(),
                  "version": head, "sources": _sources(cat, name, parent)}
        # dataset.json first: until the manifest below lands, the head manifest's flag keeps it restricted.
        cat.set_info(name, {**info, "restricted": False})
        return cat.commit(
            name, [], expected_parent=head, job=parent.job, job_digest=None, runs=parent.runs,
            embedding_model=parent.embedding_model, restricted=False,
            message=f"released by {by}: {reason}",
            prov={"wasDerivedFrom": f"{name}@{head}", "used": [f"{name}@{head}"],
                  "wasGeneratedBy": {"activity": "release", **record}},
        )
