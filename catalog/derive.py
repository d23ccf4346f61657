"""Versions built from other versions, without regenerating anything.

* ``takedown``: a new version without the rows a SQL filter selects (by sample
  id, model, prompt pattern...). Untouched shards are reused as they are.
* ``mix``: a training mix of a synthetic and a real version at an explicit
  synthetic share, every row keeping its own ``origin``.

Each result is an ordinary immutable version whose manifest says how it was
derived, in W3C PROV terms.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.manifest import Manifest
from catalog.row_filter import select_ids
from catalog.schema import SCHEMA
from catalog.store import Catalog, CatalogError
from catalog.version import open_version


def takedown(cat: Catalog, name: str, where: str, reason: str) -> Manifest:
    """Commit a new head without the rows matching ``where`` (all statuses); ``reason`` must say why."""
    if not reason.strip():  # the manifest's only record of why rows were taken down
        raise CatalogError("takedown needs a non-empty --reason (it is recorded in the new version's manifest)")
    cat.info(name)  # an unknown name fails here, before the lock creates its folder
    with cat.lock(name):
        head = open_version(cat, name, allow_restricted=True)  # rows are rewritten inside the dataset, not read out
        drop = select_ids(head.all_files, where)
        if not drop:
            raise CatalogError(f"{head.ref}: no rows match {where!r}; nothing to take down")
        keep_refs, new_refs = [], []
        for ref, path in zip(head.manifest.shards, head.all_files):
            table = pq.read_table(path, schema=SCHEMA)
            mask = pc.is_in(table["sample_id"], value_set=pa.array(sorted(drop)))
            if not pc.any(mask).as_py():
                keep_refs.append(ref)
                continue
            rest = table.filter(pc.invert(mask))
            if rest.num_rows:
                new_refs.append(cat.write_shard(name, rest, ref.role))
        return cat.commit(
            name,
            keep_refs + new_refs,
            expected_parent=head.version,
            keep_parent_shards=False,
            job=head.manifest.job,
            job_digest=None,
            runs=head.manifest.runs,
            embedding_model=head.manifest.embedding_model,
            message=f"takedown of {len(drop)} rows: {reason}",
            prov={
                "wasDerivedFrom": head.ref,
                "wasGeneratedBy": {"activity": "takedown", "where": where, "reason": reason, "removed": len(drop)},
                "used": [head.ref],
            },
        )


def mix(
    cat: Catalog,
    synthetic_ref: str,
    real_ref: str,
    synthetic_share: float,
    out: str,
    seed: int = 0,
    allow_restricted: bool = False,
) -> Manifest:
    """A new 'mixed' dataset version: all kept real rows plus synthetic rows at the given share."""
    if not 0.0 <= synthetic_share < 1.0:
        raise CatalogError(f"synthetic share (--ratio) must be in [0, 1), not {synthetic_share}")
    synth = open_version(cat, synthetic_ref, allow_restricted)
    real = open_version(cat, real_ref, allow_restricted)
    if cat.info(synth.name)["origin"] != "synthetic" or cat.info(real.name)["origin"] != "real":
        raise CatalogError(f"mix needs a synthetic and a real version, got {synth.ref} and {real.ref}")
    real_rows = real.table(origin="real")
    synth_rows = synth.table(origin="synthetic")
    want = round(real_rows.num_rows * synthetic_share / (1 - synthetic_share))
    if want > synth_rows.num_rows:
        raise CatalogError(f"{synth.ref} has {synth_rows.num_rows} kept rows; the mix needs {want}")
    # deterministic choice: order by a seeded hash of the sample id
    order = duckdb.sql(
        f"SELECT sample_id FROM synth_rows ORDER BY hash(sample_id || '{int(seed)}') LIMIT {want}"
    ).fetchall()
    chosen = pa.array([r[0] for r in order], pa.string())  # typed: at share 0 the list is empty
    synth_pick = synth_rows.filter(pc.is_in(synth_rows["sample_id"], value_set=chosen))
    restricted = real.restricted or synth.restricted  # a mix of restricted rows stays restricted
    # Restricted is decided when the mix is created: Catalog.create refuses to add these rows to an existing,
    # unrestricted mix of that name (everyone could read them there).
    cat.create(out, "mixed", description=f"{synth.ref} + {real.ref} at {synthetic_share:.0%} synthetic",
               restricted=restricted)
    with cat.lock(out):
        refs = [cat.write_shard(out, t) for t in (real_rows, synth_pick) if t.num_rows]  # share 0: real rows only
        return cat.commit(
            out,
            refs,
            keep_parent_shards=False,
            message=f"mix: {real_rows.num_rows} real + {synth_pick.num_rows} synthetic",
            prov={
                "wasDerivedFrom": [synth.ref, real.ref],
                "wasGeneratedBy": {"activity": "mix", "synthetic_share": synthetic_share, "seed": seed},
                "used": [synth.ref, real.ref],
            },
        )
