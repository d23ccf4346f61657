"""Integrity checks: shard hashes, row counts, schema, and the manifest hash chain.

Each manifest records its parent manifest's sha256, so versions 1..N form a
hash chain: flipping any byte of any manifest breaks the link to its child,
and flipping any byte of any shard breaks the shard's own content hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow.parquet as pq
from pydantic import ValidationError

from catalog.manifest import Manifest, sha256_file
from catalog.schema import SCHEMA
from catalog.store import Catalog


@dataclass
class VerifyReport:
    """Problems found (each names a file), and what was checked."""

    dataset: str
    version: int
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    manifests_checked: int = 0
    head_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_shard(cat: Catalog, name: str, ref, report: VerifyReport, seen: set[str]) -> None:
    if ref.sha256 in seen:
        return
    seen.add(ref.sha256)
    path = cat.path(name) / ref.file
    report.shards_checked += 1
    if not path.is_file():
        report.problems.append(f"{path}: shard missing")
        return
    actual = sha256_file(path)
    if actual != ref.sha256 or path.stem != ref.sha256:
        report.problems.append(f"{path}: content hash {actual[:16]}... does not match manifest {ref.sha256[:16]}...")
        return
    try:
        meta = pq.read_metadata(path)
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - any parse error is a finding
        report.problems.append(f"{path}: unreadable Parquet ({exc})")
        return
    if meta.num_rows != ref.rows:
        report.problems.append(f"{path}: {meta.num_rows} rows, manifest says {ref.rows}")
    if not schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        report.problems.append(f"{path}: schema differs from the catalog schema")


def verify(cat: Catalog, name: str, version: int | None = None) -> VerifyReport:
    """Check versions 1..``version`` (default head) of a dataset.

    The manifest chain is always walked to the head (a later manifest seals
    the earlier ones); shards are checked for versions up to ``version``.
    """
    head = cat.head(name) or 0
    version = version or head
    report = VerifyReport(name, version)
    seen: set[str] = set()
    previous_sha: str | None = None
    for v in range(1, head + 1):
        path = cat.manifest_path(name, v)
        report.manifests_checked += 1
        if not path.is_file():
            report.problems.append(f"{path}: manifest missing")
            previous_sha = None
            continue
        data = path.read_bytes()
        try:
            m = Manifest.model_validate_json(data)
        except ValidationError as exc:
            report.problems.append(f"{path}: not a valid manifest ({exc.error_count()} errors)")
            previous_sha = sha256_file(path)
            continue
        if m.version != v or m.dataset != name:
            report.problems.append(f"{path}: claims to be {m.dataset}@{m.version}")
        if v > 1 and m.parent_sha256 != previous_sha:
            report.problems.append(
                f"{cat.manifest_path(name, v - 1)}: hash does not match the parent hash recorded in {path.name}"
            )
        if m.rows != sum(s.rows for s in m.shards):
            report.problems.append(f"{path}: row total {m.rows} != sum of shard rows")
        for ref in m.shards if v <= version else []:
            _check_shard(cat, name, ref, report, seen)
        previous_sha = sha256_file(path)
    report.head_sha256 = previous_sha
    if head and cat.head_sha256(name) not in (None, previous_sha):
        report.problems.append(f"{cat.manifest_path(name, head)}: hash does not match the one sealed in HEAD")
    return report
