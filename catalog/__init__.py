"""synthgen's provenance store: versioned, immutable Parquet datasets.

Training code typically needs only::

    from catalog import Catalog, open_version, load
    cat = Catalog("synthgen-data/catalog")
    v = open_version(cat, "digits-synth@1")       # or "digits-synth" for head
    table = v.table()                              # Arrow, kept rows only
    ds = v.to_torch()                              # (image, label, sample_id)
    mix = load(cat, ["digits-synth@1", "digits-real"], origin="both")
"""

from catalog.access import RestrictedError
from catalog.audit import AuditRecord, audit
from catalog.ingest import IngestError, ingest_folder
from catalog.manifest import Manifest, RunRef, ShardRef
from catalog.schema import SCHEMA, samples_to_table
from catalog.store import Catalog, CatalogError
from catalog.version import DatasetVersion, embeddings_of, load, open_version, parse_ref

__all__ = [
    "AuditRecord", "Catalog", "CatalogError", "DatasetVersion", "IngestError", "Manifest", "RunRef",
    "SCHEMA", "RestrictedError", "ShardRef", "audit", "embeddings_of", "ingest_folder", "load", "open_version", "parse_ref",
    "samples_to_table",
]
