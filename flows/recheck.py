"""Optimistic concurrency for a job's commit: bring its decisions up to the current head.

A job decides against the head it started from (its basis). If other
versions landed before it publishes, only the rows they added are checked,
outside the lock, as Delta Lake and Iceberg check the files committed
meanwhile: each of the job's rows is searched against the new versions'
kept rows, and only if one comes close enough to change a decision or its
evidence are the job's shards re-decided, from the first affected one on
(with the new rows as part of the earlier set), and only the shards whose
decisions change are rewritten. The result equals deciding the whole job
against the new head. A version between that removed or rewrote rows
(takedown, rededup) is not an append: then every shard is re-decided
against the new head's index.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from catalog.schema import DECISION_COLUMNS, samples_from_table, write_decisions
from catalog.vector_index import _extended_parent, _kept_embeddings
from catalog.version import DatasetVersion
from flows.decide import DECISION_INPUTS, JobDecider, shard_rows, vectors
from synthgen.dedup import VectorSet
from synthgen.imaging import decode
from synthgen.index import SegmentedVectorSet
from synthgen.records import KEPT
from synthgen.rules import evidence_columns
from synthgen.run_set import float32_floor
from synthgen.run_so_far import RunSoFar

_INPUTS = DECISION_INPUTS + evidence_columns()
_DECIDED = [c.name for c in DECISION_COLUMNS]


def recheck(decider: JobDecider) -> int:
    """Make the job's decisions hold against the dataset's head now; returns how many shards were rewritten."""
    cat, name, basis = decider.catalog, decider.name, decider.basis
    head = cat.head(name)
    if head == basis.checked:
        return 0
    newer = [cat.manifest(name, v) for v in range((basis.checked or 0) + 1, head + 1)]
    if all(m.parent is None or _extended_parent(cat, m) is not None for m in newer):
        delta = _added_rows(decider, newer)
        earlier = SegmentedVectorSet((list(decider.earlier.parts) if decider.earlier else []) + [delta])
        first = _first_affected(decider, delta)
    else:  # rows were removed or rewritten meanwhile: decide again against the whole new head
        earlier, first = vectors(cat, f"{name}@{head}", decider.embedder), 0
    if first is not None and decider.spec.dedup.keep != "first":
        first = 0  # 'quality' visits the whole job by score: all of it is decided again
    rewritten = _redecide(decider, earlier, first) if first is not None else 0
    decider.set_checked(head, earlier)
    return rewritten


def _added_rows(decider: JobDecider, newer) -> VectorSet:
    """The kept rows the versions in ``newer`` added, in commit order, in the job's embedding space."""
    ids: list[str] = []
    parts = []
    for m in newer:
        added = set(m.added_shards)
        version = DatasetVersion(decider.catalog, m.model_copy(update={"shards": [s for s in m.shards
                                                                                  if s.sha256 in added]}))
        got, emb = _kept_embeddings(version, decider.embedder.name,
                                    lambda images: decider.embedder.embed_images([decode(b) for b in images]))
        if got:
            ids += got
            parts.append(emb)
    return VectorSet.build(ids, np.concatenate(parts) if parts else np.zeros((0, 1), np.float32))


def _first_affected(decider: JobDecider, delta: VectorSet) -> int | None:
    """The first shard with a row the new rows could change (status or evidence), or None."""
    if not delta.ids:
        return None
    floor = float32_floor(decider.spec.dedup.threshold)
    for k, shard in enumerate(decider.shards):
        t = shard_rows(decider, decider.decided(shard), ["embedding", "nn_similarity"])
        if not t.num_rows:
            continue
        emb = np.asarray(t["embedding"].combine_chunks().values.to_numpy(zero_copy_only=False),
                         np.float32).reshape(t.num_rows, -1)
        sim, _ = delta.nearest(emb)
        nn = np.array([-np.inf if v is None else v for v in t["nn_similarity"].to_pylist()], np.float32)
        # ties count: on equal similarity the dataset's row may replace a real one as the evidence
        if np.any((sim >= floor) | (np.isfinite(sim) & (sim >= nn))):
            return k
    return None


def _redecide(decider: JobDecider, earlier, first: int) -> int:
    """Decide the shards from ``first`` on again against ``earlier``; rewrite those whose decisions change."""
    decisions = [decider.decided(s) for s in decider.shards]
    tables = {k: shard_rows(decider, decisions[k], _INPUTS + _DECIDED) for k in range(first, len(decisions))}
    samples = {k: samples_from_table(t.select(_INPUTS)) for k, t in tables.items()}
    decider.earlier = earlier
    if decider.spec.dedup.keep == "first":
        run = RunSoFar()
        for d in decisions[:first]:
            kept = shard_rows(decider, d, ["sample_id", "embedding", "status"])
            _add(run, samples_from_table(kept))
        for k in tables:
            decider.pass_(run)(samples[k])
            _add(run, samples[k])
    else:  # visits the whole job by score: one pass over all of it (first is 0)
        decider.pass_(None)([s for k in tables for s in samples[k]])
    rewritten = 0
    for k, t in tables.items():
        if not _changed(t, samples[k]):
            continue  # nothing changed: the shard's files stand
        full = shard_rows(decider, decisions[k])
        decider.write(decider.shards[k], write_decisions(full, samples[k]))
        rewritten += 1
    return rewritten


def _changed(t: pa.Table, samples) -> bool:
    """Whether the decisions in ``samples`` differ from those stored in ``t`` (same rows)."""
    return any(not pa.array([c.get(s) for s in samples], c.type).equals(t[c.name].combine_chunks())
               for c in DECISION_COLUMNS)


def _add(run: RunSoFar, samples) -> None:
    kept = [s for s in samples if s.status == KEPT]
    if kept:
        run.add([s.sample_id for s in kept], np.stack([s.embedding for s in kept]))
