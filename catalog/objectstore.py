"""Shared storage for the catalog, addressed by URL: the few write primitives a safe publish needs.

A shared catalog has the layout of a local one (see ``catalog.store``) under
a URL: ``s3://bucket/prefix`` on any S3-compatible server, or a local path or
``file://`` URL (a shared mount). The S3 endpoint comes from the storage
options (``endpoint_url=``; the CLI's ``--endpoint-url``) or from botocore's
``$AWS_ENDPOINT_URL``; credentials from the usual AWS variables and files.

S3 has no rename, so publishing (``catalog.publish``) is built on three
properties of single objects instead:

* ``put``: one PUT is atomic; a reader gets the whole old object or the whole
  new one, never a part (a multipart upload too: it appears when completed);
* ``put(create=True)``: a conditional PUT (``If-None-Match: *``) that fails
  with ``FileExistsError`` when the key exists, so of two writers creating
  one key exactly one succeeds;
* ``swap``: replace an object only if it is still the one that was read
  (``If-Match: <ETag>``; or create it only if still absent), so a pointer
  such as HEAD is moved by compare-and-swap and never backwards.

On a local filesystem the same three come from temp file + rename, a hard
link (which fails if the target exists), and the dataset's commit lock.
Other fsspec protocols are refused: they do not promise conditional writes.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import fsspec
from filelock import FileLock
from fsspec.implementations.local import LocalFileSystem

from catalog.atomic import TMP_PREFIX, atomic_write, temp_path
from catalog.errors import CatalogError
from catalog.safe_paths import confined_relative
from catalog.storage import Storage

# Conditions S3 reports when a conditional write loses (412), or meets another in flight (409).
_LOST = {"PreconditionFailed", "ConditionalRequestConflict"}


class RemoteError(CatalogError):
    """Shared storage that cannot be used: bad URL, unreachable endpoint, missing bucket, no access."""


def _lost_condition(exc: BaseException) -> bool:
    """True when an error from s3fs is S3 refusing a conditional write (not an I/O failure)."""
    if isinstance(exc, FileExistsError):
        return True
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    return response.get("Error", {}).get("Code") in _LOST


class ObjectStore(Storage):
    """One shared catalog root: ``Storage``'s reads plus the write primitives. Keys as in ``catalog.layout``."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        url = str(url).rstrip("/")
        options = dict(storage_options or {})
        if fsspec.utils.get_protocol(url) == "s3":
            # Other publishers change the bucket under us: no cached listings,
            # and no fs instance shared with other endpoints or credentials.
            options.setdefault("use_listings_cache", False)
            options.setdefault("skip_instance_cache", True)
        try:
            fs, root = fsspec.url_to_fs(url, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise RemoteError(f"cannot open {url}: {exc}") from None
        if not isinstance(fs, LocalFileSystem) and "s3" not in fs.protocol:
            raise RemoteError(f"{url}: only s3:// URLs and local paths are supported "
                              "(publishing needs conditional writes)")
        super().__init__(fs, root, url=url)  # every read and list below is relative to the root
        self.rolls_forward = True  # see Storage.rolls_forward

    @property
    def endpoint(self) -> str:
        """Where the objects live, for messages."""
        if self.local:
            return self.root
        kwargs = getattr(self.fs, "client_kwargs", None) or {}
        url = getattr(self.fs, "endpoint_url", None) or kwargs.get("endpoint_url") or os.environ.get(
            "AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return url or "the default AWS S3 endpoint"

    # -- reachability -------------------------------------------------------
    def check(self, create: bool = False) -> None:
        """Fail with a clear ``RemoteError`` unless the store can be used.

        ``create`` (before publishing): make a local root; on S3, also check
        that the server honours put-if-absent (three small requests).
        """
        if self.local:
            if create:
                Path(self.root).mkdir(parents=True, exist_ok=True)
            elif not Path(self.root).is_dir():
                raise RemoteError(f"no shared catalog at {self.root} (not a folder)")
            return
        bucket = self.root.split("/", 1)[0]
        if not bucket:
            raise RemoteError(f"{self.url}: no bucket in the URL (use s3://BUCKET/PREFIX)")
        try:
            self.fs.call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError:
            raise RemoteError(f"bucket {bucket!r} does not exist at {self.endpoint}") from None
        except PermissionError as exc:
            raise RemoteError(f"access to bucket {bucket!r} at {self.endpoint} denied: {exc}") from None
        except Exception as exc:  # botocore's connection and credential errors share no useful base
            name = type(exc).__name__
            if "Credential" in name:
                raise RemoteError(f"no S3 credentials for {self.url} ({exc}); set AWS_ACCESS_KEY_ID and "
                                  "AWS_SECRET_ACCESS_KEY or an AWS profile") from None
            raise RemoteError(f"cannot reach {self.endpoint} for {self.url}: {name}: {exc}") from None
        if create:
            self._check_conditional_writes()

    def _check_conditional_writes(self) -> None:
        """Refuse a server that ignores ``If-None-Match``: publishing there could silently lose a version."""
        key = f".synthgen-probe/{uuid.uuid4().hex}"
        self.put(key, b"", create=True)
        try:
            self.put(key, b"", create=True)
        except FileExistsError:
            return
        finally:
            self.files.rm_file(key)
        raise RemoteError(f"{self.endpoint} ignores conditional writes (If-None-Match: *); "
                          "two publishers could both create one version there")

    # -- reads --------------------------------------------------------------
    def read(self, key: str) -> bytes | None:
        """A small object's bytes, or None when it does not exist."""
        return self.read_tagged(key)[0]

    def keys(self, prefix: str) -> set[str]:
        """Every key under ``prefix`` (recursive), minus local temp and lock files."""
        return {k for k in self.files.find(prefix)
                if not k.rsplit("/", 1)[-1].startswith((TMP_PREFIX, ".lock"))}

    def read_tagged(self, key: str) -> tuple[bytes | None, Any]:
        """An object's bytes with a tag for ``swap`` (its ETag on S3, the bytes locally); (None, None) if absent."""
        if self.local:
            try:
                data = self.files.cat_file(key)
            except FileNotFoundError:
                data = None
            return data, data
        from fsspec.asyn import sync

        bucket, path, _ = self.fs.split_path(f"{self.root}/{key}")

        async def get():
            try:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=path)
            except FileNotFoundError:
                return None, None
            # One GET (s3fs's cat_file adds a HEAD, and a LIST when the key is absent);
            # bytes and ETag from one response describe the same object.
            try:
                return await resp["Body"].read(), resp["ETag"]
            finally:
                resp["Body"].close()

        return sync(self.fs.loop, get)

    # -- writes -------------------------------------------------------------
    def put(self, key: str, data: bytes, create: bool = False) -> None:
        """Write a whole object atomically; ``create``: raise ``FileExistsError`` if the key exists."""
        if self.local:
            atomic_write(confined_relative(self.root, key, "key"), data, exclusive=create)
            return
        try:
            self.files.pipe_file(key, data, mode="create" if create else "overwrite")
        except OSError as exc:
            if create and _lost_condition(exc):
                raise FileExistsError(self.where(key)) from exc
            raise

    def upload(self, key: str, source: Path) -> None:
        """Copy a local file to ``key``; readers see it only once complete."""
        if not self.local:
            self.files.put_file(str(source), key)
            return
        dest = confined_relative(self.root, key, "key")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(dest)
        try:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def swap(self, key: str, tag: Any, data: bytes) -> bool:
        """Replace ``key`` with ``data`` only if it is still what ``read_tagged`` saw (tag None: still absent).

        False when another writer changed it first: read it again and decide anew.
        """
        if self.local:
            path = confined_relative(self.root, key, "key")
            path.parent.mkdir(parents=True, exist_ok=True)
            # The same lock file as Catalog.lock: a shared folder is a catalog, and its commits and pushes serialize.
            with FileLock(str(path.parent / ".lock"), is_singleton=True):
                if self.read(key) != tag:
                    return False
                atomic_write(path, data)
            return True
        bucket, path, _ = self.fs.split_path(f"{self.root}/{key}")
        condition = {"IfMatch": tag} if tag is not None else {"IfNoneMatch": "*"}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=path, Body=data, **condition)
        except OSError as exc:
            if _lost_condition(exc):
                return False
            raise
        return True
