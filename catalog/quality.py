"""A version's quality report from its stored embeddings and those of its real reference set.

Nothing is re-embedded: every row already carries the embedding the dedup
pass used, and the real rows carry theirs from ingest. Only the drawn
rows' embeddings are read (``synthgen.quality.plan_draws`` needs just the
class or prompt of each row): at most ``max_samples`` plus ``max_per_group``
per class or prompt. The reference is the job's ``dedup.real_dataset`` (its
head) unless another is named.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError
from catalog.version import DatasetVersion, read_rows, open_version, read_columns, select_rows
from synthgen.quality import QualityConfig, plan_draws, score_draw
from synthgen.quality_report import QualityReport
from synthgen.utility import plan_utility, score_utility


def stored_groups(version: DatasetVersion, origin: str | None = None) -> tuple[list[str | None], set[str]]:
    """Class name (else prompt) of each kept row, in version order, and the rows' embedding models."""
    # Only scores leave (never rows or images), so a restricted reference set is scored without the flag.
    t = read_rows(version, ["label_name", "prompt", "embedding_model"], "kept", origin)
    groups = [n if n is not None else p for n, p in zip(t["label_name"].to_pylist(), t["prompt"].to_pylist())]
    return groups, set(t["embedding_model"].drop_null().to_pylist())


def stored_embeddings(version: DatasetVersion, rows: np.ndarray, origin: str | None = None) -> np.ndarray:
    """(len(rows), d) float32 embeddings of the kept rows at sorted positions ``rows``.

    Read shard by shard, keeping only the wanted rows: memory is one shard's
    embedding column plus the sample, however large the version.
    """
    out, offset = [], 0
    for f in version.files:
        t = select_rows([pq.read_table(f, columns=read_columns(["embedding"]), schema=SCHEMA)], ["embedding"],
                        "kept", origin)
        lo, hi = np.searchsorted(rows, [offset, offset + len(t)])
        if hi > lo:
            col = t["embedding"].take(pa.array(rows[lo:hi] - offset)).combine_chunks()
            if col.null_count:
                raise CatalogError(f"{version.ref}: {col.null_count} kept rows have no stored embedding")
            out.append(col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(hi - lo, -1))
        offset += len(t)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _rows_of(version: DatasetVersion, draws_rows: list[np.ndarray], origin: str | None):
    """The embeddings of every row some draw uses, read once; returns a lookup by row indices."""
    need = np.unique(np.concatenate(draws_rows)) if draws_rows else np.zeros(0, np.int64)
    emb = stored_embeddings(version, need, origin)
    return lambda idx: emb[np.searchsorted(need, idx)]


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
    syn_groups, models = stored_groups(v, origin)
    if not syn_groups:
        raise CatalogError(f"{v.ref} has no kept rows to assess")
    if len(models) > 1:
        raise CatalogError(f"{v.ref} mixes embedding models {sorted(models)}: its vectors are not one space")
    model = next(iter(models), None)
    real_ref = real or reference_of(cat, v)
    note, r, ref_groups = "", None, None
    if real_ref:
        r = open_version(cat, real_ref)
        if r.manifest.origin != "real":
            raise CatalogError(f"quality reference {real_ref!r} is a {r.manifest.origin} dataset, not real")
        real_ref = r.ref
        ref_groups, real_models = stored_groups(r, "real")
        if real_models != models:
            note = (f"{real_ref} is embedded by {sorted(real_models)}, not {model}: no comparison "
                    "(re-ingest it with the version's embedder)")
            real_ref, r, ref_groups = None, None, None
    draws = plan_draws(syn_groups, ref_groups, cfg)
    # The training-utility probe's rows are read in the same pass as the scores' (one read per shard).
    probe = plan_utility(syn_groups, ref_groups, cfg) if r is not None else None
    extra_syn, extra_real = ([probe.synthetic], [probe.real_train, probe.real_test]) if probe else ([], [])
    syn_rows = _rows_of(v, [d.synthetic for d in draws] + extra_syn, origin)
    real_rows = (_rows_of(r, [d.real for d in draws if d.real is not None] + extra_real, "real")
                 if r is not None else None)
    scores = [score_draw(d, syn_rows(d.synthetic), None if d.real is None else real_rows(d.real), cfg) for d in draws]
    utility = None
    if probe is not None:
        sy, ry = np.array(syn_groups, object), np.array(ref_groups, object)
        utility = score_utility(probe, syn_rows(probe.synthetic), sy[probe.synthetic], real_rows(probe.real_train),
                                ry[probe.real_train], real_rows(probe.real_test), ry[probe.real_test])
    return QualityReport(v.ref, real_ref, model, cfg, scores[0], scores[1:], note, utility)
