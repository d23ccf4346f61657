"""Re-deduplicate a version at new thresholds without regenerating anything.

Every row already stores its embedding and every rule's evidence (pixel
guard, CLIP score, image measurements), so new decisions are the job's own
decision stage (``synthgen.dedup.NearDuplicatePass`` with the rules) over
the stored data, in the version's row order (plan order within each run, runs in commit order). The
result is a new version of the same dataset whose manifest records that it
was derived, and from what, with which thresholds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError, Manifest, RestrictedError, open_version
from catalog.access import GUARD_COLUMNS, copies_of_restricted
from catalog.schema import DECISION_COLUMNS, SCHEMA, samples_from_table, write_decisions
from catalog.vector_index import version_index
from catalog.version import embeddings_of
from synthgen.dedup import NearDuplicatePass
from synthgen.rules import build_rules, evidence_columns
from synthgen.spec import DedupSpec


def rededup(
    cat: Catalog,
    name: str,
    threshold: float,
    real_threshold: float | None = None,
    pixel_threshold: float | None = None,
    min_clip_score: float | None = None,
    keep: str = "first",
    allow_restricted: bool = False,
    **rule_fields,
) -> Manifest:
    """Commit a new head of ``name`` with every synthetic row decided again.

    ``rule_fields``: other ``DedupSpec`` fields of the rules (e.g. a rule's own
    threshold); rules read them from the stored evidence columns.
    New decisions that would make rows the memorisation guard blocked as
    copies of restricted real data readable (``released_copies``) raise
    ``RestrictedError`` before anything is written, unless ``allow_restricted``;
    the new version's manifest records how many were released.
    """
    origin = cat.info(name)["origin"]  # an unknown name fails here, before the lock creates its folder
    if origin != "synthetic":  # a real (or mixed) dataset's real rows are not ours to drop
        raise CatalogError(f"rededup needs a synthetic dataset; {name!r} is {origin}")
    with cat.lock(name):
        head = open_version(cat, name, allow_restricted=True)  # re-decided rows stay in the dataset
        t = head.table(["sample_id", "job_digest", "plan_index", "embedding", "embedding_model", "real_dataset",
                        "real_threshold",
                        "pixel_threshold", "real_pixel_distance", "real_pixel_nn_id", "clip_score",
                        "init_image_id", "init_distance",
                        *evidence_columns()], status="all")
        guard = head.table(["sample_id", *GUARD_COLUMNS], status="all")  # the parent's evidence, rows in t's order
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
        samples = samples_from_table(t.drop_columns(["embedding"]))
        for s, e in zip(samples, emb):
            s.embedding = e
        params = {"threshold": threshold, "real_threshold": real_threshold, "pixel_threshold": pixel_threshold,
                  "min_clip_score": min_clip_score, "keep": keep, **rule_fields}
        # The thresholds above are taken as given (as rededup always has); the rules' own fields are
        # validated like a spec's, so a rule reads the types it declared.
        typed = DedupSpec.model_validate(rule_fields)
        spec = DedupSpec.model_construct(**params | {k: getattr(typed, k) for k in rule_fields})
        NearDuplicatePass(threshold, build_rules(spec), None, real, keep)([samples[i] for i in plan_order(t)])
        counts: dict[str, int] = {}
        for s in samples:
            counts[s.status] = counts.get(s.status, 0) + 1
        # In a restricted dataset no row is readable without the flag, whatever its status.
        released = [] if head.restricted else released_copies(cat, guard, samples)
        if released and not allow_restricted:
            raise RestrictedError(
                f"{head.ref}: these thresholds would make {len(released)} rows that the memorisation guard blocked "
                "as copies of restricted real data readable by everyone; pass allow_restricted=True "
                "(--allow-restricted on the command line) to release them, or keep thresholds that still block them")
        if released:
            params["released_restricted_copies"] = len(released)
        refs, offset = [], 0
        for path in head.all_files:  # the rows in the order decided above (``status="all"`` reads all shards)
            table = pq.read_table(path, schema=SCHEMA)
            table = write_decisions(table, samples[offset : offset + table.num_rows])
            table = table.set_column(SCHEMA.get_field_index("dedup_threshold"), "dedup_threshold",
                                     pa.array(np.full(table.num_rows, threshold, np.float32)))
            refs += cat.write_split(name, table)  # newly kept rows train, newly dropped ones are excluded
            offset += table.num_rows
        return cat.commit(
            name, refs, expected_parent=head.version, keep_parent_shards=False, job=head.manifest.job,
            runs=head.manifest.runs, embedding_model=head.manifest.embedding_model,
            message=f"re-dedup of {head.ref}: " + ", ".join(f"{k}={v}" for k, v in counts.items()),
            prov={"wasDerivedFrom": head.ref, "wasGeneratedBy": {"activity": "rededup", **params},
                  "used": [head.ref] + sorted(reals)},
        )


def released_copies(cat: Catalog, guard: pa.Table, samples: list) -> list[str]:
    """Ids of rows that copy restricted data in the parent (``copies_of_restricted`` over ``guard``, its
    ``sample_id`` and ``GUARD_COLUMNS``) and no longer would with the new decisions of ``samples`` (same rows)."""
    was = copies_of_restricted(cat, guard)
    now = guard
    for c in DECISION_COLUMNS:  # the re-decided status and evidence; the stored thresholds stay as they were
        if c.name in now.column_names:
            now = now.set_column(now.column_names.index(c.name), c.name, pa.array([c.get(s) for s in samples], c.type))
    return guard["sample_id"].filter(pc.and_(was, pc.invert(copies_of_restricted(cat, now)))).to_pylist()


def plan_order(t: pa.Table) -> np.ndarray:
    """Row positions in decision order: jobs in the order their rows first appear, plan order within each.

    A job's kept and excluded rows live in separate shards, so file order is
    not plan order; rows without a plan index (real rows) keep file order.
    """
    jobs = t["job_digest"].to_pylist()
    rank: dict = {}
    group = np.array([rank.setdefault(j, len(rank)) for j in jobs], np.int64)
    plan = np.array([-1 if p is None else p for p in t["plan_index"].to_pylist()], np.int64)
    return np.lexsort((np.arange(len(jobs)), plan, group))


def _first(t, column: str, default):
    values = t[column].drop_null().to_pylist()
    return float(values[0]) if values else default

