"""A version's quality report from its stored embeddings and those of its real reference set.

Nothing is re-embedded: every row already carries the embedding the dedup
pass used, and the real rows carry theirs from ingest. The reference is the
job's ``dedup.real_dataset`` (its head) unless another is named.
"""

from __future__ import annotations

import numpy as np

from catalog.store import Catalog, CatalogError
from catalog.version import DatasetVersion, open_version
from synthgen.quality import QualityConfig, score_groups
from synthgen.quality_report import QualityReport


def stored_embeddings(version: DatasetVersion, origin: str | None = None) -> tuple[np.ndarray, list[str | None], set[str]]:
    """Kept rows' (n, d) float32 embeddings, class name (else prompt) per row, and embedding models."""
    t = version.table(["embedding", "embedding_model", "label_name", "prompt"], origin=origin)
    groups = [n if n is not None else p for n, p in zip(t["label_name"].to_pylist(), t["prompt"].to_pylist())]
    models = set(t["embedding_model"].drop_null().to_pylist())
    col = t["embedding"].combine_chunks()
    if col.null_count:
        raise CatalogError(f"{version.ref}: {col.null_count} kept rows have no stored embedding")
    if len(t) == 0:
        return np.zeros((0, 0), np.float32), groups, models
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(t), -1), groups, models


def reference_of(cat: Catalog, version: DatasetVersion) -> str | None:
    """The real dataset (at its head) the job that made this version deduplicated against."""
    name = ((version.manifest.job or {}).get("dedup") or {}).get("real_dataset")
    if not name or not cat.exists(name) or cat.head(name) is None:
        return None
    return f"{name}@{cat.head(name)}"


def version_quality(cat: Catalog, ref: str, real: str | None = None, config: QualityConfig | None = None) -> QualityReport:
    """The quality report of ``ref`` against ``real`` (default: its job's real dataset)."""
    cfg = config or QualityConfig()
    v = open_version(cat, ref)
    origin = "synthetic" if v.manifest.origin != "real" else None
    syn, syn_groups, models = stored_embeddings(v, origin)
    if len(syn) == 0:
        raise CatalogError(f"{v.ref} has no kept rows to assess")
    if len(models) > 1:
        raise CatalogError(f"{v.ref} mixes embedding models {sorted(models)}: its vectors are not one space")
    model = next(iter(models), None)
    real_ref = real or reference_of(cat, v)
    note, ref_emb, ref_groups = "", None, None
    if real_ref:
        r = open_version(cat, real_ref)
        if r.manifest.origin != "real":
            raise CatalogError(f"quality reference {real_ref!r} is a {r.manifest.origin} dataset, not real")
        real_ref = r.ref
        ref_emb, ref_groups, real_models = stored_embeddings(r, "real")
        if real_models != models:
            note = (f"{real_ref} is embedded by {sorted(real_models)}, not {model}: no comparison "
                    "(re-ingest it with the version's embedder)")
            real_ref, ref_emb, ref_groups = None, None, None
    overall, groups = score_groups(syn, syn_groups, ref_emb, ref_groups, cfg)
    return QualityReport(v.ref, real_ref, model, cfg, overall, groups, note)
