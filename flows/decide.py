"""A job decided shard by shard in plan order, each shard's rows written once, in final form.

Shard k's earlier set is the parent version's index plus the kept rows of
the job's shards before k (``synthgen.run_so_far``), so deciding shard by
shard gives the decisions of one pass over the whole job
(``NearDuplicatePass(before=...)``). A decided shard's kept rows go to a
training shard and the rest to an excluded shard, content-addressed in the
job's ``shards/`` folder (the catalog is untouched until the publish moves
them in: renames, not writes), then its decision record is written. The job's staging folder
(``flows.shard.staging_dir``) holds::

    basis.json                the version decided against, the real set's version, and the
                              head the decisions were last checked against (``flows.recheck``)
    shard-00003.decided.json  a decided shard: its final shard refs, counts and runs
    shards/<sha256>.parquet   decided shards, final bytes, moved into the catalog at the publish
    shard-00003.parquet       a shard staged undecided (its predecessors were not decided
                              in time, or ``keep: quality``); the commit decides it in plan order

Every file is written atomically; a record is written after its shards, so
a kill leaves either a whole decision or none, and a rerun redoes only that.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from catalog import Catalog, CatalogError, RunRef, ShardRef
from catalog.atomic import atomic_write
from catalog.schema import SCHEMA, samples_from_table, samples_to_table, write_decisions
from catalog.vector_index import VersionIndex, version_index
from flows.models import get_embedder
from flows.settings import Paths
from flows.shard import staging_dir
from synthgen.dedup import NearDuplicatePass
from synthgen.embedder import Embedder
from synthgen.failpoints import failpoint
from synthgen.imaging import decode
from synthgen.plan import Shard, make_shards
from synthgen.records import KEPT, Sample
from synthgen.rules import build_rules, evidence_columns
from synthgen.run_so_far import RunSoFar
from synthgen.spec import JobSpec

# what the decision stage reads of each row (not the images)
DECISION_INPUTS = ["sample_id", "embedding", "real_pixel_distance", "real_pixel_nn_id", "clip_score"]


class Basis(BaseModel):
    """What a job's decisions are relative to (``basis.json``)."""

    parent: int | None  # the dataset version decided against (None: the first version)
    real: str | None  # the real set's version ('name@N'), or None
    checked: int | None  # the head the decisions hold against: the parent, until a recheck moves it


class Decision(BaseModel):
    """One decided shard (``shard-NNNNN.decided.json``)."""

    shard: int
    refs: list[ShardRef]  # its training shard, then its excluded shard (either may be absent)
    counts: dict[str, int]
    runs: list[RunRef]  # the (Prefect, MLflow) runs that generated its rows


def vectors(catalog: Catalog, ref: str, embedder: Embedder, parent: VersionIndex | None = None) -> VersionIndex:
    """Kept rows of a version as its persisted FAISS index, in the embedder's space (built when missing)."""
    def reembed(images: list[bytes]) -> np.ndarray:
        return embedder.embed_images([decode(b) for b in images])

    return version_index(catalog, ref, embedder.name, reembed, parent=parent)


def record_path(stage: Path, shard: Shard) -> Path:
    return stage / f"{shard.name}.decided.json"


def staged_path(stage: Path, shard: Shard) -> Path:
    return stage / f"{shard.name}.parquet"


def read_decision(stage: Path, shard: Shard) -> Decision | None:
    p = record_path(stage, shard)
    return Decision.model_validate_json(p.read_bytes()) if p.is_file() else None


def runs_in(table: pa.Table) -> list[RunRef]:
    """Distinct (Prefect, MLflow) run ids of rows (a resumed job has several)."""
    seen: dict[tuple, RunRef] = {}
    for p, m in zip(table["prefect_flow_run_id"].to_pylist(), table["mlflow_run_id"].to_pylist()):
        seen.setdefault((p, m), RunRef(prefect_flow_run_id=p, mlflow_run_id=m))
    return list(seen.values())


def shard_dir(stage: Path) -> Path:
    """Where a job's decided shards wait for the publish (moved into the catalog by ``Catalog.commit``)."""
    return stage / "shards"


def shard_rows(decider: "JobDecider", decision: Decision, columns: list[str] | None = None) -> pa.Table:
    """A decided shard's rows (training and excluded) back in plan order.

    Read from the job's folder, or from the catalog when a publish that was
    cut short had moved them in already.
    """
    cols = sorted(set(columns) | {"plan_index"}, key=SCHEMA.names.index) if columns else None
    here, there = shard_dir(decider.stage), decider.catalog.path(decider.name)

    def located(ref: ShardRef) -> Path:
        waiting = here / Path(ref.file).name
        return waiting if waiting.is_file() else there / ref.file

    parts = [pq.read_table(located(r), columns=cols, schema=SCHEMA) for r in decision.refs]
    t = pa.concat_tables(parts) if parts else SCHEMA.empty_table().select(cols or SCHEMA.names)
    return t.take(pc.sort_indices(t["plan_index"]))


class JobDecider:
    """Decides one job's shards in plan order; one per job and process (``decider_for``).

    Holds the run's kept rows decided so far, the parent's and the real
    set's indexes, so each shard costs its own rows only.
    """

    def __init__(self, spec: JobSpec, paths: Paths):
        self.spec, self.catalog, self.name = spec, Catalog(paths.catalog), spec.output.dataset
        self.stage = staging_dir(paths, spec)
        self.shards = make_shards(spec.total_images, spec.output.shard_size)
        self.embedder = get_embedder(spec)
        self._basis: Basis | None = None
        self.earlier: VersionIndex | None = None
        self.real: VersionIndex | None = None
        self.run = RunSoFar()
        self.next = 0  # shards [0, next) are in self.run
        # Two shards of this process may finish at once (flows.overlap): shard k+1 sees k's record as soon as
        # it is written, but must not read the run until k's kept rows are in it.
        self._deciding = threading.Lock()

    # -- the basis ----------------------------------------------------------------
    @property
    def basis(self) -> Basis:
        """Fixed by the job's first decision (the head then) and read back by every later one."""
        if self._basis is None:
            path = self.stage / "basis.json"
            if not path.is_file():
                self.catalog.create(self.name, "synthetic")
                head = self.catalog.head(self.name)
                real = self.spec.dedup.real_dataset
                if real and self.catalog.info(real)["origin"] != "real":
                    raise CatalogError(f"dedup.real_dataset {real!r} is not a real dataset")
                b = Basis(parent=head, real=f"{real}@{self.catalog.head(real)}" if real else None, checked=head)
                try:  # exclusive: two processes deciding the first shards agree on one basis
                    atomic_write(path, b.model_dump_json().encode(), exclusive=True)
                except FileExistsError:
                    pass
            self._basis = Basis.model_validate_json(path.read_bytes())
            self._load_indexes()
        return self._basis

    def _load_indexes(self) -> None:
        b = self._basis
        self.earlier = vectors(self.catalog, f"{self.name}@{b.checked}", self.embedder) if b.checked else None
        self.real = vectors(self.catalog, b.real, self.embedder) if b.real else None

    def set_checked(self, head: int, earlier) -> None:
        """Record that the decisions now hold against ``head`` (``flows.recheck``), with its earlier set."""
        self._basis = self.basis.model_copy(update={"checked": head})
        atomic_write(self.stage / "basis.json", self._basis.model_dump_json().encode())
        self.earlier = earlier

    # -- deciding -----------------------------------------------------------------
    def decided(self, shard: Shard) -> Decision | None:
        return read_decision(self.stage, shard)

    def ready(self, shard: Shard) -> bool:
        """Every shard before ``shard`` is decided."""
        return all(record_path(self.stage, s).is_file() for s in self.shards[self.next : shard.index])

    def catch_up(self, upto: int) -> None:
        """Add the kept rows of decided shards [next, upto) to the run (decided here or by other processes)."""
        for s in self.shards[self.next : upto]:
            d = self.decided(s)
            if d is None:
                raise CatalogError(f"{self.name}: {s.name} is not decided yet; shards are decided in plan order")
            t = shard_rows(self, d, ["sample_id", "embedding", "status"])
            self._add_kept(samples_from_table(t))
        self.next = max(self.next, upto)

    def _add_kept(self, samples: list[Sample]) -> None:
        kept = [s for s in samples if s.status == KEPT]
        if kept:
            self.run.add([s.sample_id for s in kept], np.stack([s.embedding for s in kept]))

    def pass_(self, before: RunSoFar | None) -> NearDuplicatePass:
        d = self.spec.dedup
        return NearDuplicatePass(d.threshold, build_rules(d), self.earlier, self.real, d.keep, before=before)

    def decide(self, shard: Shard, samples: list[Sample], table: pa.Table | None = None) -> Decision:
        """Decide ``shard``'s samples (plan order) and write its final shards and record.

        ``table``: the shard's full rows when they were staged (their images are
        not in ``samples``); else the rows are made from ``samples``.
        """
        with self._deciding:
            self.basis  # noqa: B018 - fixes the basis and loads the indexes
            self.catch_up(shard.index)
            self.pass_(self.run)(samples)
            full = samples_to_table(samples) if table is None else write_decisions(table, samples)
            decision = self.write(shard, full)
            self._add_kept(samples)
            self.next = shard.index + 1
            return decision

    def write(self, shard: Shard, full: pa.Table) -> Decision:
        """Write a decided shard's rows as final shards, then its record."""
        refs = self.catalog.write_split(self.name, full, shard_dir(self.stage))
        failpoint("shard-files", f"{shard.name}: final shards written, decision record not yet")
        counts: dict[str, int] = {}
        for r in refs:
            for k, v in r.rows_by_status.items():
                counts[k] = counts.get(k, 0) + v
        decision = Decision(shard=shard.index, refs=refs, counts=counts, runs=runs_in(full))
        atomic_write(record_path(self.stage, shard), decision.model_dump_json().encode())
        return decision

    def decide_staged(self) -> None:
        """Decide, in plan order, every shard that was staged undecided (the commit's fallback).

        ``keep: quality`` visits the whole job by score, so its shards are all
        staged and decided here in one pass.
        """
        todo = [s for s in self.shards if self.decided(s) is None]
        if not todo:
            return
        missing = [s.name for s in todo if not staged_path(self.stage, s).is_file()]
        if missing:
            raise CatalogError(f"cannot commit {self.name}: shards not generated: {', '.join(missing)}")
        cols = DECISION_INPUTS + evidence_columns()
        if self.spec.dedup.keep != "first":
            self.basis  # noqa: B018
            tables = [pq.read_table(staged_path(self.stage, s), columns=cols) for s in todo]
            samples = samples_from_table(pa.concat_tables(tables))
            self.pass_(None)(samples)
            offset = 0
            for s, t in zip(todo, tables):
                full = pq.read_table(staged_path(self.stage, s), schema=SCHEMA)
                self.write(s, write_decisions(full, samples[offset : offset + t.num_rows]))
                offset += t.num_rows
            return
        for s in todo:
            full = pq.read_table(staged_path(self.stage, s), schema=SCHEMA)
            self.decide(s, samples_from_table(full.select(cols)), full)

    def decisions(self) -> list[Decision]:
        """Every shard's decision, in plan order (all must be decided)."""
        out = [self.decided(s) for s in self.shards]
        if any(d is None for d in out):
            raise CatalogError(f"{self.name}: not every shard is decided")
        return out  # type: ignore[return-value]


_deciders: dict[Path, JobDecider] = {}
_deciders_lock = threading.Lock()  # shard tasks of one process run in threads: one decider per job


def decider_for(spec: JobSpec, paths: Paths) -> JobDecider:
    """This process's decider of ``spec``'s job (kept in memory between its shards)."""
    stage = staging_dir(paths, spec)
    with _deciders_lock:
        d = _deciders.get(stage)
        if d is None or d.spec.digest() != spec.digest():
            d = _deciders[stage] = JobDecider(spec, paths)
        return d


def forget(spec: JobSpec, paths: Paths) -> None:
    """Drop the job's decider (after its commit)."""
    _deciders.pop(staging_dir(paths, spec), None)
