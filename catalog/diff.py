"""Differences between two versions: rows added/removed and how the specs differ."""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog.store import Catalog
from catalog.version import open_version


@dataclass
class VersionDiff:
    """Rows only in A / only in B (any status), and changed job-spec fields."""

    a: str
    b: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    spec_changes: dict[str, tuple] = field(default_factory=dict)


def _flat(d: dict | None, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def spec_changes(job_a: dict | None, job_b: dict | None) -> dict[str, tuple]:
    """Job-spec fields (dotted names) whose values differ between two manifests' jobs: name -> (a, b)."""
    fa, fb = _flat(job_a), _flat(job_b)
    return {k: (fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)}


def diff(cat: Catalog, ref_a: str, ref_b: str) -> VersionDiff:
    """Compare two versions (of the same or different datasets)."""
    va, vb = open_version(cat, ref_a), open_version(cat, ref_b)
    ids_a = set(va.table(["sample_id"], status="all")["sample_id"].to_pylist())
    ids_b = set(vb.table(["sample_id"], status="all")["sample_id"].to_pylist())
    changes = spec_changes(va.manifest.job, vb.manifest.job)
    return VersionDiff(va.ref, vb.ref, sorted(ids_b - ids_a), sorted(ids_a - ids_b), changes)
