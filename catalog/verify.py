"""Integrity checks: shard hashes, row counts, schema, the manifest hash chain, id segments.

Each manifest records its parent manifest's sha256, so versions 1..N form a
hash chain: flipping any byte of any manifest breaks the link to its child,
and flipping any byte of any shard or id segment breaks its own content hash.

One implementation for every catalog: ``verify_storage`` reads through
``catalog.storage.Storage``, so a local folder, a shared ``s3://`` catalog
(``catalog.remote.verify_remote``) and a DVC revision are checked alike.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from catalog.errors import IntegrityError
from catalog.id_index import parse_ids_json, segment_shards
from catalog.gc import unnamed_shards
from catalog.layout import manifest_key, version_dir_key
from catalog.manifest import Manifest, release_record, sha256_bytes
from catalog.schema import SCHEMA
from catalog.storage import Storage
from catalog.store import Catalog, CatalogError

_SHARD_FILE = re.compile(r"shards/[0-9a-f]{64}\.parquet")


@dataclass
class VerifyReport:
    """Problems found (each names a file), and what was checked."""

    dataset: str
    version: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is not a problem but was seen (an unfinished commit)
    shards_checked: int = 0
    id_segments_checked: int = 0
    manifests_checked: int = 0
    head_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _hash_problem(storage: Storage, key: str, sha256: str, what: str, listed_in: str, report: VerifyReport) -> bool:
    """Report a missing file or one whose bytes (or name) do not match ``sha256``."""
    try:
        actual = storage.sha256(key)
    except FileNotFoundError:
        report.problems.append(f"{storage.where(key)}: {what} missing")
        return True
    if actual != sha256 or PurePosixPath(key).stem != sha256:
        report.problems.append(f"{storage.where(key)}: content hash {actual[:16]}... does not match {listed_in} "
                               f"{sha256[:16]}...")
        return True
    return False


def _segment_shards(storage: Storage, key: str) -> list[str] | None:
    """The shards a segment's footer says it indexes; None when unreadable (its hash check reports it)."""
    try:
        with storage.open(key) as f:
            return segment_shards(pq.read_metadata(f))
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException):
        return None


def _check_id_index(storage: Storage, name: str, m: Manifest, manifest_sha: str | None, report: VerifyReport,
                    seen: set[str]) -> None:
    """A version's ids.json, if any: written for this manifest, segments intact, covering its shards."""
    key = f"{version_dir_key(name, m.version)}/ids.json"
    data = storage.read(key)
    if data is None:
        return  # optional: audit rebuilds it or scans
    entries = parse_ids_json(data, m.version, manifest_sha)
    if entries is None:
        report.problems.append(f"{storage.where(key)}: unreadable, or written for other manifest bytes")
        return
    for e in entries:
        if e["sha256"] not in seen:
            seen.add(e["sha256"])
            report.id_segments_checked += 1
            _hash_problem(storage, f"{name}/{e['file']}", e["sha256"], "id segment", "ids.json", report)
    segments = [_segment_shards(storage, f"{name}/{e['file']}") for e in entries]
    indexed = {sha for seg in segments if seg for sha in seg}
    if all(seg is not None for seg in segments) and indexed != {s.sha256 for s in m.shards}:
        report.problems.append(f"{storage.where(key)}: id segments do not index exactly the version's shards")


def check_parquet(source, ref, where: str, report: VerifyReport) -> None:
    """A shard's footer (a path or an open file): row count as in the manifest, the catalog schema."""
    try:
        meta = pq.read_metadata(source)
        schema = pq.read_schema(source)
    except Exception as exc:  # noqa: BLE001 - any parse error is a finding
        report.problems.append(f"{where}: unreadable Parquet ({exc})")
        return
    if meta.num_rows != ref.rows:
        report.problems.append(f"{where}: {meta.num_rows} rows, manifest says {ref.rows}")
    if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        report.problems.append(f"{where}: schema differs from the catalog schema")


def _check_shard(storage: Storage, name: str, ref, report: VerifyReport, seen: set[tuple]) -> None:
    # Keyed by everything the manifest claims, not the hash alone: a later manifest listing a
    # known hash under another file name, or with another row count, must be checked too.
    claim = (ref.file, ref.sha256, ref.rows)
    if claim in seen:
        return
    seen.add(claim)
    if _SHARD_FILE.fullmatch(ref.file) is None:  # e.g. ../other-dataset/shards/<sha>.parquet: never read it
        report.problems.append(f"{storage.where(name)}: a manifest lists shard {ref.file!r}, outside the "
                               "dataset's shards/ folder")
        return
    key = f"{name}/{ref.file}"
    report.shards_checked += 1
    if not _hash_problem(storage, key, ref.sha256, "shard", "manifest", report):
        with storage.open(key) as f:  # the footer only: ranged reads on an object store
            check_parquet(f, ref, storage.where(key), report)


def check_manifest(data: bytes | None, name: str, v: int, previous_sha: str | None, where, report: VerifyReport
                   ) -> tuple[Manifest | None, str | None]:
    """One link of the hash chain: manifest ``v``'s bytes (None: missing) against the previous link.

    ``where(v)`` names manifest ``v`` in messages. Returns the parsed manifest
    (None when missing or invalid) and its sha256, the parent hash that
    version ``v + 1`` must record.
    """
    report.manifests_checked += 1
    if data is None:
        report.problems.append(f"{where(v)}: manifest missing")
        return None, None
    sha = sha256_bytes(data)
    try:
        m = Manifest.model_validate_json(data)
    except ValidationError as exc:
        report.problems.append(f"{where(v)}: not a valid manifest ({exc.error_count()} errors)")
        return None, sha
    if m.version != v or m.dataset != name:
        report.problems.append(f"{where(v)}: claims to be {m.dataset}@{m.version}")
    if v > 1 and m.parent_sha256 != previous_sha:
        report.problems.append(f"{where(v - 1)}: hash does not match the parent hash recorded in {where(v)}")
    if m.rows != sum(s.rows for s in m.shards):
        report.problems.append(f"{where(v)}: row total {m.rows} != sum of shard rows")
    return m, sha


def check_head_seal(head: int, sealed: str | None, where, report: VerifyReport) -> None:
    """HEAD records the head manifest's sha256: it must be the hash the chain walk ended on."""
    if head and sealed != report.head_sha256:
        report.problems.append(f"{where(head)}: hash does not match the one sealed in HEAD")


def check_restricted(storage: Storage, name: str, manifests: list[Manifest], report: VerifyReport) -> None:
    """dataset.json's restricted flag must not drop what a (hash-chained) manifest records."""
    try:
        info = json.loads(storage.read(f"{name}/dataset.json") or b"{}")
    except ValueError:
        report.problems.append(f"{storage.where(name + '/dataset.json')}: not valid JSON")
        return
    # A release (``catalog.release``: an open manifest recording who and why) lifts what came before it.
    released = max((m.version for m in manifests if release_record(m)), default=0)
    sealed = [m.version for m in manifests if m.restricted and m.version > released]
    if sealed and not info.get("restricted"):
        report.problems.append(f"{storage.where(name + '/dataset.json')}: says the dataset is not restricted, but "
                               f"the manifest of version {sealed[-1]} records it as restricted (dataset.json was "
                               "edited; readers keep it restricted)")


def verify(cat: Catalog, name: str, version: int | None = None) -> VerifyReport:
    """Check versions 1..``version`` (default head) of a local dataset (``verify_storage`` on its folder)."""
    cat.info(name)  # an unknown dataset or a bad name is an error, not a report
    return verify_storage(cat.storage, name, version)


def verify_storage(storage: Storage, name: str, version: int | None = None) -> VerifyReport:
    """Check versions 1..``version`` (default head) of a dataset on any storage (local, S3, a DVC revision).

    The manifest chain is always walked to the head (a later manifest seals
    the earlier ones); shards (hash, name, row count, schema) and id-index
    segments are checked for versions up to ``version``. Every problem is
    reported, not just the first; every byte of those files is read.
    """
    try:
        head, sealed = storage.head(name)  # reads a few bytes; a malformed HEAD is a finding, not a hang
    except IntegrityError as exc:
        return VerifyReport(name, 0, problems=[str(exc)])
    if version is not None and not 1 <= version <= (head or 0):
        raise CatalogError(f"dataset {name!r} has no version {version} (head is {head or 'none'})")
    version = version or head
    report = VerifyReport(name, version)
    seen: set[tuple] = set()
    seen_segments: set[str] = set()
    previous_sha: str | None = None
    manifests: list[Manifest] = []

    def where(v: int) -> str:
        return storage.where(manifest_key(name, v))

    for v in range(1, head + 1):
        data = storage.manifest_bytes(name, v)
        if data is None:  # the chain cannot go on: one finding, not one per missing number up to HEAD
            report.manifests_checked += 1
            report.problems.append(f"{where(v)}: manifest missing" + (f" (and versions {v + 1}..{head}: HEAD names "
                                                                     f"{head})" if v < head else ""))
            previous_sha = None
            break
        m, previous_sha = check_manifest(data, name, v, previous_sha, where, report)
        if m is not None:
            manifests.append(m)
        if m is not None and v <= version:
            for ref in m.shards:
                _check_shard(storage, name, ref, report, seen)
            _check_id_index(storage, name, m, previous_sha, report, seen_segments)
    beyond = storage.beyond_head(name, head, sealed)
    if beyond and storage.head(name) == (head, sealed):  # not a commit that landed while we walked
        report.problems.append(beyond)
    elif not beyond and storage.manifest_bytes(name, head + 1) is not None:
        report.notes.append(f"{where(head + 1)}: written by a commit that has not moved HEAD (in progress, or "
                            "killed: the next commit replaces it); not published")
    check_restricted(storage, name, manifests, report)
    try:
        unnamed = unnamed_shards(storage, name)
    except IntegrityError:  # an unreadable manifest: reported above as a problem of the chain
        unnamed = []
    if unnamed:
        report.notes.append(f"{len(unnamed)} shard file(s) that no manifest names (left by a commit that died before "
                            f"its manifest; never read): `synthgen gc {name}` removes them")
    report.head_sha256 = previous_sha
    check_head_seal(head, sealed, where, report)
    return report
