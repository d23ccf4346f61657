"""Re-deduplicate a version at new thresholds without regenerating anything.

Every row already stores its embedding and its pixel-guard evidence, so new
decisions are ``synthgen.dedup.decide`` over the stored data, in the
version's row order (plan order within each run, runs in commit order). The
result is a new version of the same dataset whose manifest records that it
was derived, and from what, with which thresholds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError, Manifest, open_version
from catalog.schema import SCHEMA
from catalog.vector_index import version_index
from catalog.version import embeddings_of
from flows.steps import apply_decisions  # the same column update the job's commit uses
from synthgen.dedup import decide


def rededup(
    cat: Catalog,
    name: str,
    threshold: float,
    real_threshold: float | None = None,
    pixel_threshold: float | None = None,
    min_clip_score: float | None = None,
    keep: str = "first",
) -> Manifest:
    """Commit a new head of ``name`` with every synthetic row decided again."""
    cat.info(name)  # an unknown name fails here, before the lock creates its folder
    with cat.lock(name):
        head = open_version(cat, name)
        t = head.table(["sample_id", "embedding", "embedding_model", "real_dataset", "real_threshold",
                        "pixel_threshold", "real_pixel_distance", "real_pixel_nn_id", "clip_score"], status="all")
        ids, emb, models = embeddings_of(head, status="all")
        if len(models) > 1:
            raise CatalogError(f"{head.ref} mixes embedding models {sorted(models)}; cannot re-decide in one space")
        reals = set(t["real_dataset"].drop_null().to_pylist())
        real = None
        if reals:
            if len(models) != 1:
                raise CatalogError(f"{head.ref}: rows carry no embedding model to compare with {sorted(reals)[0]}")
            # The real dataset's persisted index in the rows' space; CatalogError
            # when its rows were embedded by another model (nothing here re-embeds).
            real = version_index(cat, sorted(reals)[0], next(iter(models)))
        real_threshold = real_threshold if real_threshold is not None else _first(t, "real_threshold", 1.0)
        pixel_threshold = pixel_threshold if pixel_threshold is not None else _first(t, "pixel_threshold", None)
        d = decide(
            ids, emb, threshold, real_threshold, earlier=None, real=real,
            real_pixel=list(zip(t["real_pixel_distance"].to_pylist(), t["real_pixel_nn_id"].to_pylist())),
            pixel_threshold=pixel_threshold, scores=t["clip_score"].to_pylist(), min_score=min_clip_score, keep=keep,
        )
        refs, offset = [], 0
        for path in head.files:
            table = pq.read_table(path, schema=SCHEMA)
            table = apply_decisions(table, d, offset, offset + table.num_rows)
            table = table.set_column(SCHEMA.get_field_index("dedup_threshold"), "dedup_threshold",
                                     pa.array(np.full(table.num_rows, threshold, np.float32)))
            refs.append(cat.write_shard(name, table))
            offset += table.num_rows
        params = {"threshold": threshold, "real_threshold": real_threshold, "pixel_threshold": pixel_threshold,
                  "min_clip_score": min_clip_score, "keep": keep}
        return cat.commit(
            name, refs, expected_parent=head.version, keep_parent_shards=False, job=head.manifest.job,
            runs=head.manifest.runs, embedding_model=head.manifest.embedding_model,
            message=f"re-dedup of {head.ref}: " + ", ".join(f"{k}={v}" for k, v in d.counts().items()),
            prov={"wasDerivedFrom": head.ref, "wasGeneratedBy": {"activity": "rededup", **params},
                  "used": [head.ref] + sorted(reals)},
        )


def _first(t, column: str, default):
    values = t[column].drop_null().to_pylist()
    return float(values[0]) if values else default

