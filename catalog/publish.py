"""Push a dataset's versions to a shared catalog (S3 or a path) and pull them back, atomically.

The commit protocol, for an object store without rename (``catalog.objectstore``):

1. Immutable, content-addressed objects first: shards, id-index and vector-index
   segments that the shared catalog lacks. Nothing references them yet, and a
   reader never follows a key nobody references, so they are invisible.
2. Then the version's manifest, created with put-if-absent (``If-None-Match: *``).
   This is the commit point: of two publishers of version N exactly one
   creates ``versions/00000N.json``; the other gets ``ConflictError``.
3. Then the version's derived files (``versions/00000N/``: id list, index list,
   card, grids), by the winner only, so a loser never overwrites them.
4. HEAD last, one small object moved by compare-and-swap (``If-Match`` on its
   ETag), forward only. Readers go by HEAD, so they see the old head or the
   new one, never a partial version.

A publisher killed between 2 and 4 leaves committed manifests that HEAD does
not name yet: readers still see the previous head. The next push, by anyone,
first rolls HEAD forward over manifests that extend its chain (everything
they reference was uploaded before them), so the commit stands and a second
publisher learns of it; a re-push by the killed publisher also uploads the
derived files it had not written.

Pull is the reverse into a local catalog, under its commit lock: manifests
checked as a chain from the shared HEAD, every shard and segment hashed as
it is read, the local HEAD moved last.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from catalog.dvc_io import IntegrityError, copy_verified
from catalog.errors import ConflictError, RestrictedError
from catalog.access import require_access
from catalog.manifest import Manifest, sha256_bytes
from catalog.objectstore import ObjectStore
from catalog.layout import head_key, head_line, manifest_key, version_dir_key
from catalog.remote import RemoteCatalog, RemoteVersion, missing_error, open_store
from catalog.safe_paths import check_name, confined_relative
from catalog.shared_head import advance_head, roll_forward
from catalog.store import TMP_PREFIX, Catalog, CatalogError, atomic_write, temp_path
from catalog.version import DatasetVersion
from synthgen.failpoints import failpoint

# A content-addressed file named in a manifest or a segment list: its folder, its sha256, an extension.
_OBJECT_RE = re.compile(r"^(shards|ids|index)/([0-9a-f]{64})\.[a-z][a-z.]*$")


@dataclass
class SyncResult:
    """What a push or pull did."""

    name: str
    url: str
    head: int
    versions: list[int] = field(default_factory=list)  # versions published (HEAD moved over them) or pulled
    objects: int = 0  # shards and segments copied
    note: str = ""


def referenced(m: Manifest, derived: dict[str, bytes]) -> list[tuple[str, str]]:
    """(file relative to the dataset, sha256) of every content-addressed object a version needs.

    ``derived`` maps the version's derived-file names (``ids.json``,
    ``index.json``...) to their bytes. Names are checked, since segment
    lists carry no hash of their own: nothing outside shards/, ids/ and
    index/ is ever read or written through them.
    """
    out = [(s.file, s.sha256) for s in m.shards]
    try:
        for entry in json.loads(derived.get("ids.json", b'{"segments": []}'))["segments"]:
            out.append((entry["file"], entry["sha256"]))
        for entry in json.loads(derived.get("index.json", b'{"segments": []}'))["segments"]:
            out += [(entry["faiss"], entry["faiss_sha256"]), (entry["ids"], entry["ids_sha256"])]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{m.dataset}@{m.version}: unreadable segment list ({exc!r})") from None
    for rel, sha in out:
        match = _OBJECT_RE.match(rel)
        if not match or match.group(2) != sha:
            raise IntegrityError(f"{m.dataset}@{m.version}: {rel!r} is not a content-addressed object named {sha}")
    return list(dict.fromkeys(out))


def _local_derived(cat: Catalog, name: str, version: int) -> dict[str, Path]:
    """A local version's derived files, by name relative to its folder (temp files left out)."""
    folder = cat.version_dir(name, version)
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(TMP_PREFIX)} if folder.is_dir() else {}


def _publish_dataset(cat: Catalog, store: ObjectStore, name: str) -> None:
    """dataset.json, created once; later pushes only check that the origin agrees."""
    local = (cat.path(name) / "dataset.json").read_bytes()
    try:
        store.put(f"{name}/dataset.json", local, create=True)
    except FileExistsError:
        theirs = json.loads(store.read(f"{name}/dataset.json") or b"{}")
        if theirs.get("origin") != json.loads(local)["origin"]:
            raise ConflictError(f"{store.where(name)} holds {theirs.get('origin')} data, "
                                f"the local {name!r} {json.loads(local)['origin']} data") from None


def _publish_version(cat: Catalog, store: ObjectStore, name: str, version: int, present: set[str]) -> int:
    """Steps 1-3 for one version; returns how many objects were uploaded."""
    data = cat.manifest_path(name, version).read_bytes()
    m = Manifest.model_validate_json(data)
    derived = _local_derived(cat, name, version)
    uploaded = 0
    for rel, _sha in referenced(m, {k: p.read_bytes() for k, p in derived.items() if k.endswith(".json")}):
        if f"{name}/{rel}" not in present:
            store.upload(f"{name}/{rel}", confined_relative(cat.path(name), rel, "object"))
            present.add(f"{name}/{rel}")
            uploaded += 1
    failpoint("push-objects", f"{name}@{version}")
    key = manifest_key(name, version)
    try:
        store.put(key, data, create=True)
    except FileExistsError:
        theirs = store.read(key)
        if theirs != data:
            roll_forward(store, name)  # so that a pull now sees the version that won
            who = "is being created by another publisher" if theirs is None else "was published by another publisher"
            raise ConflictError(
                f"{name}@{version} {who} at {store.url} first; nothing of yours is visible there. "
                f"Pull it into a fresh catalog (synthgen --data-dir NEW pull {store.url} {name}), "
                "commit your rows on top and push again"
            ) from None
    for rel, path in derived.items():
        store.upload(f"{version_dir_key(name, version)}/{rel}", path)
    return uploaded


def push(cat: Catalog, name: str, url: "str | ObjectStore", storage_options: dict | None = None,
         allow_restricted: bool = False) -> SyncResult:
    """Publish the local versions of ``name`` that the shared catalog at ``url`` lacks.

    A restricted dataset is refused (``RestrictedError``, nothing written) unless ``allow_restricted``.

    The shared history must be a prefix of the local one; otherwise
    ``ConflictError`` (pull first). Safe to rerun after a crash, and against
    concurrent publishers (see the module docstring for the protocol).
    """
    require_access(cat.info(name), allow_restricted, "rows (to publish them)")
    for m in cat.versions(name):  # shards are uploaded whole: one holding copies of restricted images needs the flag
        DatasetVersion(cat, m, allow_restricted).check_shards_may_leave()
    store = open_store(url, storage_options, create=True)
    with cat.lock(name):  # the local head's derived files are complete once its commit returned
        local = cat.head(name)
        if not local:
            raise CatalogError(f"dataset {name!r} has no versions to push")
        _publish_dataset(cat, store, name)
        start, remote, remote_sha = roll_forward(store, name)
        result = SyncResult(name, store.url, remote)
        if remote > local:
            if sha256_bytes(RemoteCatalog(store).chain(name, local)[0][0]) == cat.manifest_sha256(name, local):
                result.note = f"the shared catalog is ahead (version {remote}); pull to update"
                return result
            raise ConflictError(f"{store.where(name)} has versions up to {remote} that are not in the local "
                                f"history (head {local}); pull into a fresh catalog and commit on top")
        if remote and cat.manifest_sha256(name, remote) != remote_sha:
            raise ConflictError(f"{store.where(name)}@{remote} differs from the local {name}@{remote}: the "
                                "histories diverged; pull into a fresh catalog and commit on top")
        present = store.keys(f"{name}/shards") | store.keys(f"{name}/ids") | store.keys(f"{name}/index")
        # From the head before rolling forward: versions a killed push committed still need their derived files.
        for version in range(start + 1, local + 1):
            result.objects += _publish_version(cat, store, name, version, present)
            result.versions.append(version)
        failpoint("push-manifests", f"{name}@{local}")
        advance_head(store, name, local, cat.manifest_sha256(name, local))
        result.head = local
        return result


def _download(store: ObjectStore, key: str, sha256: str, dest: Path) -> None:
    """Fetch one content-addressed object, hashing as it arrives; rename into place only if it matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(dest)
    try:
        with open(tmp, "wb") as f:
            copy_verified(store.files, key, sha256, f, "object", missing=missing_error)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _pull_version(store: ObjectStore, cat: Catalog, data: bytes, m: Manifest) -> int:
    """Copy one version's objects and derived files, then its manifest; returns objects fetched."""
    name = m.dataset
    prefix = f"{version_dir_key(name, m.version)}/"
    derived = {k[len(prefix):]: store.read(k) for k in sorted(store.keys(prefix))}
    for rel in derived:  # object keys are arbitrary strings: none may climb out of the version's folder
        if any(part in ("", ".", "..") for part in rel.split("/")):
            raise IntegrityError(f"{store.where(prefix + rel)}: refusing a derived file outside {prefix}")
    fetched = 0
    for rel, sha in referenced(m, {k: v for k, v in derived.items() if k.endswith(".json")}):
        dest = confined_relative(cat.path(name), rel, "object")
        if not dest.is_file():  # content-addressed: a local copy is the same bytes
            _download(store, f"{name}/{rel}", sha, dest)
            fetched += 1
    # A manifest a killed pull left behind its HEAD (the same bytes) stays; any other is removed only when
    # proven unpublished (Catalog.discard_unpublished), else the pull stops: the local HEAD was moved back.
    if not cat.discard_unpublished(name, m.version, keep=data):
        atomic_write(cat.manifest_path(name, m.version), data, exclusive=True)
    for rel, blob in derived.items():  # after the manifest, as a local commit writes them after it
        atomic_write(confined_relative(cat.version_dir(name, m.version), rel, "derived file"), blob)
    return fetched


def check_copies_may_come(remote: RemoteCatalog, name: str, cat: Catalog, allow_restricted: bool) -> None:
    """``RestrictedError`` unless the shards a pull of ``name`` would fetch may land on this machine.

    ``push``'s rule, the other way: a shard holding excluded rows that copy a
    restricted real dataset (as the shared catalog knows its datasets) is
    copied only with ``allow_restricted``; once local, such rows would be
    withheld only as long as no open local dataset has the real set's name.
    Shards the local catalog already holds are not fetched, so not judged;
    nor are a restricted version's, which stay unreadable here without the flag.
    """
    if allow_restricted:
        return
    local = (cat.head(name) or 0) if cat.exists(name) else 0
    head = remote.head(name)[0]
    if local >= head:
        return
    chain = [m for _data, m in remote.chain(name, local + 1)]
    seen = {s.file for m in chain for s in m.shards if confined_relative(cat.path(name), s.file, "object").is_file()}
    held: dict[str, list[str]] = {}
    for m in chain:
        if m.restricted:  # the whole version is restricted here too (its flag is sealed): nothing readable lands
            continue
        held |= RemoteVersion(remote, m).withheld_shards(skip=seen)
        seen |= {s.file for s in m.shards}  # a version lists its parent's shards again: each is read once
    if held:
        span = f"{local + 1}..{head}" if head > local + 1 else f"{head}"
        raise RestrictedError(
            f"{name}@{span} at {remote.url}: {sum(map(len, held.values()))} excluded rows are blocked "
            "copies of restricted real data; pulling the shards holding them needs allow_restricted=True "
            "(--allow-restricted on the command line)")


def pull(url: "str | ObjectStore", name: str, cat: Catalog, storage_options: dict | None = None,
         allow_restricted: bool = False) -> SyncResult:
    """Copy the shared catalog's versions of ``name`` that the local catalog lacks, verifying every byte.

    Shards holding blocked copies of a restricted real dataset's images are
    refused (``RestrictedError``, nothing written) unless ``allow_restricted``,
    as ``push`` refuses them (``check_copies_may_come``).
    The local history must be a prefix of the shared one; otherwise
    ``ConflictError``. The local HEAD moves last, so a killed pull leaves the
    local catalog at its previous version, and rerunning it resumes.
    """
    remote = RemoteCatalog(open_store(url, storage_options))
    store = remote.store
    head, sealed = remote.head(name)
    result = SyncResult(name, store.url, head)
    if head == 0:
        raise CatalogError(f"dataset {name!r} in {store.url} has no versions yet")
    check_copies_may_come(remote, check_name(name), cat, allow_restricted)
    info = store.read(f"{name}/dataset.json")
    theirs = json.loads(info)
    if not cat.exists(check_name(name)):
        atomic_write(cat.path(name) / "dataset.json", info)
    elif cat.info(name)["origin"] != theirs["origin"]:
        raise ConflictError(f"the local {name!r} holds {cat.info(name)['origin']} data, {store.url} does not")
    elif (theirs.get("restricted") or remote.manifest(name).restricted) and not cat.info(name).get("restricted"):
        raise ConflictError(f"{store.url}'s {name!r} is restricted and the local one is not: its rows would be "
                            "readable by everyone here; pull it into a fresh catalog")
    with cat.lock(name):
        local = cat.head(name) or 0
        if local >= head:
            if cat.manifest_sha256(name, head) != sealed:
                raise ConflictError(f"the local {name}@{head} differs from {store.url}: the histories diverged")
            result.note = "up to date" if local == head else f"the local catalog is ahead (version {local})"
            return result
        chain = remote.chain(name, local + 1)
        if local and chain[0][1].parent_sha256 != cat.manifest_sha256(name, local):
            raise ConflictError(f"{store.url}'s {name}@{local + 1} does not extend the local {name}@{local}: "
                                "the histories diverged")
        for data, m in chain:
            result.objects += _pull_version(store, cat, data, m)
            result.versions.append(m.version)
        atomic_write(cat.root / head_key(name), head_line(head, sealed))
    return result
