"""Audit: everything the catalog knows about one sample, queried with DuckDB."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from catalog.store import Catalog


@dataclass
class AuditRecord:
    """A sample's row (minus image bytes and embedding) and where it lives."""

    sample_id: str
    dataset: str
    row: dict
    shard: str
    versions: list[int] = field(default_factory=list)


def _committed_shards(catalog: Catalog) -> dict[str, tuple[str, list[int]]]:
    """shard path -> (dataset, versions that list it)."""
    out: dict[str, tuple[str, list[int]]] = {}
    for name in catalog.names():
        for m in catalog.versions(name):
            for s in m.shards:
                path = str(catalog.path(name) / s.file)
                out.setdefault(path, (name, []))[1].append(m.version)
    return out


def audit(catalog: Catalog, sample_id: str) -> list[AuditRecord]:
    """Find a sample id in every committed shard of every dataset."""
    shards = _committed_shards(catalog)
    if not shards:
        return []
    con = duckdb.connect()
    rel = con.execute(
        "SELECT * EXCLUDE (image, embedding), filename FROM read_parquet(?, filename=true) WHERE sample_id = ?",
        [sorted(shards), sample_id],
    )
    cols = [d[0] for d in rel.description]
    records = []
    for values in rel.fetchall():
        row = dict(zip(cols, values))
        shard = row.pop("filename")
        dataset, versions = shards[str(Path(shard))]
        records.append(AuditRecord(sample_id, dataset, row, shard, sorted(versions)))
    return records
