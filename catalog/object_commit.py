"""A catalog whose root is a URL: the writes a local commit makes with rename and a lock, made with conditional writes.

``Catalog("s3://bucket/prefix")`` keeps the local layout (``catalog.layout``)
and the local commit's guarantees; only the primitive behind each step
changes (``catalog.objectstore``)::

    local folder                            object store
    shard: temp + fsync + rename            one PUT of a content-addressed key (skipped when present)
    manifest: hard link, fails if present   put-if-absent (If-None-Match: *): the commit point
    HEAD: rename, under the file lock       compare-and-swap (If-Match), forward only
    the dataset's file lock                 none across machines: a commit lands only on the head it
                                            was built on; the loser reads the new head and builds again

A writer killed between the manifest and HEAD leaves a committed version
that HEAD does not name yet; the next commit rolls HEAD forward over it
(``catalog.shared_head``), as the next push does for a shared catalog.

Readers need local files (Parquet footers, DuckDB, torch): a shard is
fetched once into a content-addressed cache on this machine, hashed as it
arrives, and read from there.
"""

from __future__ import annotations

import os
from pathlib import Path

from catalog.atomic import temp_path
from catalog.errors import IntegrityError
from catalog.layout import manifest_key, shard_file
from catalog.manifest import sha256_bytes
from catalog.objectstore import ObjectStore
from catalog.shared_head import advance_head, roll_forward
from synthgen.failpoints import failpoint


def default_cache() -> Path:
    """Where shards read from a catalog at a URL are kept: ``$XDG_CACHE_HOME/synthgen/shards`` (~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "synthgen" / "shards"


def default_derived(url: str, cache: Path) -> Path:
    """This machine's folder for the files derived from versions of the catalog at ``url``: beside ``cache``.

    One folder per URL (named by its digest), so two catalogs never share an index.
    """
    return Path(cache).parent / "derived" / sha256_bytes(url.encode())[:16]


class ObjectWrites:
    """The write primitives of a catalog at a URL, and its local read cache. Keys as in ``catalog.layout``."""

    def __init__(self, store: ObjectStore, cache: Path):
        self.store = store
        self.cache = Path(cache)
        self._probed = False

    def ready(self) -> None:
        """Before the first write: refuse a server that ignores conditional writes (checked once)."""
        if not self._probed:
            self.store.check(create=True)
            self._probed = True

    def create_info(self, name: str, data: bytes) -> bool:
        """Create ``dataset.json``; False when another writer created it first (the caller checks theirs)."""
        self.ready()
        try:
            self.store.put(f"{name}/dataset.json", data, create=True)
        except FileExistsError:
            return False
        return True

    def replace_info(self, name: str, data: bytes) -> None:
        """Overwrite ``dataset.json`` (one whole-object PUT: readers see the old or the new bytes)."""
        self.ready()
        self.store.put(f"{name}/dataset.json", data)

    def has_shard(self, name: str, digest: str) -> bool:
        """Whether the store holds the shard named ``digest``."""
        return self.store.files.exists(f"{name}/{shard_file(digest)}")

    def put_shard(self, name: str, src: Path, digest: str, keep: bool = False) -> None:
        """Upload a finished local shard to its content-addressed key (unless there), then remove the local file
        (``keep``: leave it; its folder's owner removes it, e.g. a job's or an ingest's staging).

        Nothing names the object until a manifest does, so an upload that
        dies half-way (S3 shows a multipart upload only once complete) or a
        shard of a commit that loses is never read.
        """
        self.ready()
        # Uploaded even when present (a commit resumed after a kill): the object's time is then fresh, so
        # ``synthgen gc`` cannot take it for a leftover while this commit's manifest is still to come.
        self.store.upload(f"{name}/{shard_file(digest)}", src)
        if not keep:
            src.unlink()

    def head(self, name: str) -> tuple[int, str | None]:
        """HEAD as (version, sha256), after rolling it over versions whose writer died before moving it."""
        _, version, sha = roll_forward(self.store, name)
        return version, sha

    def publish(self, name: str, version: int, data: bytes) -> bool:
        """Create version ``version``'s manifest, then move HEAD to it; False when another writer took it first."""
        self.ready()
        try:
            self.store.put(manifest_key(name, version), data, create=True)
        except FileExistsError:
            return False
        failpoint("manifest-written", f"{name} version {version}")
        # HEAD moves last: until here, readers still see the previous version.
        advance_head(self.store, name, version, sha256_bytes(data))
        return True

    def evict(self, digests: list[str]) -> None:
        """Remove the cached copies of these shards (a job's own, once its reports are written)."""
        for digest in digests:
            (self.cache / f"{digest}.parquet").unlink(missing_ok=True)

    def fetch(self, name: str, digest: str) -> Path:
        """The shard named ``digest`` as a local file in the cache, fetched once and hashed as it arrives.

        Only bytes that hash to ``digest`` are renamed into the cache, so a
        damaged or substituted object is refused and never read.
        """
        dest = self.cache / f"{digest}.parquet"
        if dest.is_file():
            return dest
        self.cache.mkdir(parents=True, exist_ok=True)
        key = f"{name}/{shard_file(digest)}"
        tmp = temp_path(dest)
        try:
            with open(tmp, "wb") as f:
                try:
                    got = self.store.sha256(key, dst=f)
                except FileNotFoundError:
                    raise IntegrityError(f"{self.store.where(key)}: shard listed in {name}'s manifest is missing; "
                                         f"the catalog is CORRUPT (run synthgen verify {name})") from None
                f.flush()
                os.fsync(f.fileno())
            if got != digest:
                raise IntegrityError(f"{self.store.where(key)}: content sha256 {got[:16]}... does not match the "
                                     f"manifest's {digest[:16]}...; the shard was replaced or damaged and is not "
                                     f"read (run synthgen verify {name})")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
