"""HEAD on a store without rename or locks: moved forward only, by compare-and-swap.

On object storage a version is committed when its manifest is created
(put-if-absent); HEAD, one small object, follows by compare-and-swap
(``ObjectStore.swap``). A writer killed between the two leaves a committed
manifest that HEAD does not name yet; whoever commits or pushes next first
rolls HEAD forward over it. Used by ``catalog.publish`` (push) and by a
``Catalog`` whose root is a URL (``catalog.object_commit``).
"""

from __future__ import annotations

from catalog.errors import ConflictError
from catalog.layout import head_key, head_line, manifest_key, parse_head
from catalog.manifest import Manifest, sha256_bytes
from catalog.objectstore import ObjectStore

CAS_TRIES = 20  # compare-and-swap rounds before giving up on a HEAD that keeps moving


def roll_forward(store: ObjectStore, name: str) -> tuple[int, int, str | None]:
    """Move HEAD over committed manifests that extend it; (HEAD before, HEAD after, its sha256).

    A manifest whose ``parent_sha256`` is the current head's hash was
    created after everything it references, so it is a committed version
    whose writer died (or has not yet got) to moving HEAD.
    """
    before = None
    for _ in range(CAS_TRIES):
        data, tag = store.read_tagged(head_key(name))
        version, sha = parse_head(data, store.where(head_key(name)))
        before = version if before is None else before
        target, target_sha = version, sha
        while (nxt := store.read(manifest_key(name, target + 1))) is not None:
            try:
                m = Manifest.model_validate_json(nxt)
            except ValueError:
                break
            if (m.dataset, m.version, m.parent, m.parent_sha256) != (name, target + 1, target or None, target_sha):
                break
            target, target_sha = target + 1, sha256_bytes(nxt)
        if target == version or store.swap(head_key(name), tag, head_line(target, target_sha)):
            return before, target, target_sha
    raise ConflictError(f"{store.where(head_key(name))} kept moving under {CAS_TRIES} tries; retry")


def advance_head(store: ObjectStore, name: str, version: int, sha: str) -> None:
    """Move HEAD forward to ``version`` by compare-and-swap; never backwards over a newer head."""
    for _ in range(CAS_TRIES):
        data, tag = store.read_tagged(head_key(name))
        if parse_head(data, store.where(head_key(name)))[0] >= version:
            return  # someone (a writer rolling forward) already published it, or built on it
        if store.swap(head_key(name), tag, head_line(version, sha)):
            return
    raise ConflictError(f"{store.where(head_key(name))} kept moving under {CAS_TRIES} tries; retry")
