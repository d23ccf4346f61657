"""synthgen's provenance store: versioned, immutable Parquet datasets.

Training code typically needs only::

    from catalog import Catalog, open_version, load
    cat = Catalog("synthgen-data/catalog")
    v = open_version(cat, "digits-synth@1")       # or "digits-synth" for head
    table = v.table()                              # Arrow, kept rows only
    ds = v.to_torch()                              # (image, label, sample_id)
    mix = load(cat, ["digits-synth@1", "digits-real"], origin="both")

The other names load on first use (PEP 562): reading a catalog never imports
torch or faiss, so a command that only reads (or fails on bad input)
starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Imported now, not on first use: the function `audit` shares its name with the submodule, and a
# submodule imported later (`from catalog.audit import image_of`) would be bound over the function.
# It costs duckdb's import (~60 ms), not torch's.
from catalog.audit import AuditRecord, audit

_WHERE = {
    "RestrictedError": "catalog.access",
    "IngestError": "catalog.ingest", "ingest_folder": "catalog.ingest",
    "Manifest": "catalog.manifest", "RunRef": "catalog.manifest", "ShardRef": "catalog.manifest",
    "SCHEMA": "catalog.schema", "samples_to_table": "catalog.schema",
    "Catalog": "catalog.store", "CatalogError": "catalog.store",
    "DatasetVersion": "catalog.version", "embeddings_of": "catalog.version", "load": "catalog.version",
    "open_version": "catalog.version", "parse_ref": "catalog.version",
}

__all__ = [
    "AuditRecord", "Catalog", "CatalogError", "DatasetVersion", "IngestError", "Manifest", "RunRef",
    "SCHEMA", "RestrictedError", "ShardRef", "audit", "embeddings_of", "ingest_folder", "load", "open_version", "parse_ref",
    "samples_to_table",
]
assert set(__all__) == set(_WHERE) | {"AuditRecord", "audit"}

if TYPE_CHECKING:
    from catalog.access import RestrictedError
    from catalog.ingest import IngestError, ingest_folder
    from catalog.manifest import Manifest, RunRef, ShardRef
    from catalog.schema import SCHEMA, samples_to_table
    from catalog.store import Catalog, CatalogError
    from catalog.version import DatasetVersion, embeddings_of, load, open_version, parse_ref


def __getattr__(name: str):
    """Import the submodule that defines ``name`` the first time it is asked for."""
    if name not in _WHERE:
        raise AttributeError(f"module 'catalog' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
