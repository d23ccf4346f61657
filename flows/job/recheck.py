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
against the new head's index. Part of the driver's ordered consumer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from catalog.schema import DECISION_COLUMNS, samples_from_table, write_decisions
from catalog.vector_index import extended_parent, kept_embeddings
from catalog.version import DatasetVersion
from flows.job.decisions import DECISION_INPUTS, OrderedDecisions, add_kept, version_vectors
from synthgen.vector_set import VectorSet
from synthgen.imaging import decode
from synthgen.index import SegmentedVectorSet
from synthgen.kept_so_far import KeptSoFar
from synthgen.rules import evidence_columns
from synthgen.within_job import float32_floor

INPUTS = DECISION_INPUTS + evidence_columns()
DECIDED = [c.name for c in DECISION_COLUMNS]


def recheck(job: OrderedDecisions) -> int:
    """Make the job's decisions hold against the dataset's head now; returns how many shards were rewritten."""
    cat, name, basis = job.catalog, job.name, job.basis
    head = cat.head(name)
    if head == basis.checked:
        return 0
    newer = [cat.manifest(name, v) for v in range((basis.checked or 0) + 1, head + 1)]
    if all(m.parent is None or extended_parent(cat, m) is not None for m in newer):
        delta = added_rows(job, newer)
        earlier = SegmentedVectorSet((list(job.earlier.parts) if job.earlier else []) + [delta])
        first = first_affected(job, delta)
    else:  # rows were removed or rewritten meanwhile: decide again against the whole new head
        earlier, first = version_vectors(cat, f"{name}@{head}", job.embedder), 0
    if first is not None and job.spec.dedup.keep != "first":
        first = 0  # 'quality' visits the whole job by score: all of it is decided again
    rewritten = redecide(job, earlier, first) if first is not None else 0
    job.set_checked(head, earlier)
    return rewritten


def added_rows(job: OrderedDecisions, newer) -> VectorSet:
    """The kept rows the versions in ``newer`` added, in commit order, in the job's embedding space."""
    ids: list[str] = []
    parts = []
    for m in newer:
        added = set(m.added_shards)
        version = DatasetVersion(job.catalog, m.model_copy(update={"shards": [s for s in m.shards
                                                                              if s.sha256 in added]}))
        got, emb = kept_embeddings(version, job.embedder.name,
                                   lambda images: job.embedder.embed_images([decode(b) for b in images]))
        if got:
            ids += got
            parts.append(emb)
    return VectorSet.build(ids, np.concatenate(parts) if parts else np.zeros((0, 1), np.float32))


def first_affected(job: OrderedDecisions, delta: VectorSet) -> int | None:
    """The first shard with a row the new rows could change (status or evidence), or None."""
    if not delta.ids:
        return None
    floor = float32_floor(job.spec.dedup.threshold)
    for k, shard in enumerate(job.shards):
        t = job.rows(job.decided(shard), ["embedding", "nn_similarity"])
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


def redecide(job: OrderedDecisions, earlier, first: int) -> int:
    """Decide the shards from ``first`` on again against ``earlier``; rewrite those whose decisions change."""
    decisions = [job.decided(s) for s in job.shards]
    tables = {k: job.rows(decisions[k], INPUTS + DECIDED) for k in range(first, len(decisions))}
    samples = {k: samples_from_table(t.select(INPUTS)) for k, t in tables.items()}
    job.earlier = earlier
    if job.spec.dedup.keep == "first":
        run = KeptSoFar()
        for d in decisions[:first]:
            add_kept(run, samples_from_table(job.rows(d, ["sample_id", "embedding", "status"])))
        for k in tables:
            job.near_duplicate_pass(run)(samples[k])
            add_kept(run, samples[k])
    else:  # visits the whole job by score: one pass over all of it (first is 0)
        job.near_duplicate_pass(None)([s for k in tables for s in samples[k]])
    rewritten = 0
    for k, t in tables.items():
        if not changed(t, samples[k]):
            continue  # nothing changed: the shard's files stand
        job.write(job.shards[k], write_decisions(job.rows(decisions[k]), samples[k]))
        rewritten += 1
    return rewritten


def changed(t: pa.Table, samples) -> bool:
    """Whether the decisions in ``samples`` differ from those stored in ``t`` (same rows)."""
    return any(not pa.array([c.get(s) for s in samples], c.type).equals(t[c.name].combine_chunks())
               for c in DECISION_COLUMNS)
