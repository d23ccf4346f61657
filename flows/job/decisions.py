"""The ordered consumer: the job's decisions, made in plan order by the driver alone.

Shard k's earlier set is the parent version's index plus the kept rows of
the job's shards before k (``synthgen.kept_so_far``), so deciding shard by
shard as results arrive in plan order gives the decisions of one pass over
the whole job (``NearDuplicatePass(before=...)``). A decided shard's kept
rows go to a training shard and the rest to an excluded shard,
content-addressed in the staging folder's ``shards/`` (the catalog is
untouched until the publish moves them in: renames, not writes), then its
decision record is written (``flows.job.staging``). A shard whose samples
are in memory is written once, in final form. ``keep: quality`` visits the
whole job by score: its shards are staged and decided together at the end.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError, ShardRef
from catalog.init_source import derived_restricted
from catalog.schema import SCHEMA, samples_from_table, samples_to_table, write_decisions
from catalog.tally import distinct_runs, status_counts
from catalog.vector_index import VersionIndex, version_index
from flows.job.staging import Basis, Decision, Staging
from synthgen.dedup import NearDuplicatePass
from synthgen.embedder import Embedder
from synthgen.failpoints import failpoint
from synthgen.imaging import decode
from synthgen.kept_so_far import KeptSoFar
from synthgen.plan import Round, Shard, first_round, round_shards
from synthgen.records import KEPT, Sample
from synthgen.rules import build_rules, evidence_columns
from synthgen.spec import JobSpec

# what the decision stage reads of each row (not the images)
DECISION_INPUTS = ["sample_id", "embedding", "real_pixel_distance", "real_pixel_nn_id", "clip_score", "init_image_id",
                   "init_distance"]


def version_vectors(catalog: Catalog, ref: str, embedder: Embedder, parent: VersionIndex | None = None) -> VersionIndex:
    """Kept rows of a version as its persisted FAISS index, in the embedder's space (built when missing)."""
    def reembed(images: list[bytes]) -> np.ndarray:
        return embedder.embed_images([decode(b) for b in images])

    return version_index(catalog, ref, embedder.name, reembed, parent=parent)


def add_kept(run: KeptSoFar, samples: list[Sample]) -> None:
    """Add the kept ones of ``samples`` (plan order) to ``run``."""
    kept = [s for s in samples if s.status == KEPT]
    if kept:
        run.add([s.sample_id for s in kept], np.stack([s.embedding for s in kept]))


class OrderedDecisions:
    """Decides one job's shards in plan order; lives in the driver, one per job run.

    Holds the run's kept rows decided so far and the parent's and the real
    set's indexes, so each shard costs its own rows only.
    """

    def __init__(self, spec: JobSpec, catalog: Catalog, staging: Staging, embedder: Embedder):
        self.spec, self.catalog, self.name = spec, catalog, spec.output.dataset
        self.staging, self.embedder = staging, embedder
        self.shards: list[Shard] = []  # every round's shards so far, in plan order (shard k at position k)
        self.rounds: list[Round] = []
        self.add_round(first_round(spec))
        self._basis: Basis | None = None
        self.earlier: VersionIndex | None = None
        self.real: VersionIndex | None = None
        self.run = KeptSoFar()
        self.next = 0  # shards [0, next) are in self.run
        self.rewritten = 0  # shards whose rows were written a second time (staged first, or changed by a recheck)

    # -- the basis ----------------------------------------------------------------
    @property
    def basis(self) -> Basis:
        """Fixed by the job's first decision (the head then) and read back by a resumed run."""
        if self._basis is None:
            basis = self.staging.read_basis()
            if basis is None:
                # rows made from restricted real images are restricted too: the dataset is created so
                self.catalog.create(self.name, "synthetic", restricted=derived_restricted(self.catalog, self.spec))
                head = self.catalog.head(self.name)
                real = self.spec.dedup.real_dataset
                if real and self.catalog.info(real)["origin"] != "real":
                    raise CatalogError(f"dedup.real_dataset {real!r} is not a real dataset")
                basis = Basis(parent=head, real=f"{real}@{self.catalog.head(real)}" if real else None, checked=head)
                self.staging.write_basis(basis)
            self._basis = basis
            self.earlier = version_vectors(self.catalog, f"{self.name}@{basis.checked}", self.embedder) \
                if basis.checked else None
            self.real = version_vectors(self.catalog, basis.real, self.embedder) if basis.real else None
        return self._basis

    def set_checked(self, head: int, earlier) -> None:
        """Record that the decisions now hold against ``head`` (``flows.job.recheck``), with its earlier set."""
        self._basis = self.basis.model_copy(update={"checked": head})
        self.staging.write_basis(self._basis)
        self.earlier = earlier

    # -- the plan's rounds ------------------------------------------------------------
    def add_round(self, rnd: Round) -> list[Shard]:
        """Extend the job by round ``rnd`` (``synthgen.plan.next_round``); its shards, numbered on from the last."""
        shards = round_shards(rnd, self.spec.output.shard_size, len(self.shards))
        self.rounds.append(rnd)
        self.shards += shards
        return shards

    @property
    def generated(self) -> int:
        """Samples in the plan's rounds so far."""
        return sum(len(r) for r in self.rounds)

    def tally(self) -> tuple[list[int], list[int]]:
        """Samples generated and kept so far by condition position, over every round's decided shards."""
        n = len(self.rounds[0].asks)
        generated, kept = [0] * n, [0] * n
        for rnd in self.rounds:
            for c, _, count in rnd.asks:
                generated[c] += count
        for s in self.shards:
            d = self.decided(s)
            if d is None:
                raise CatalogError(f"{self.name}: {s.name} is not decided yet; a round is counted once decided")
            for c, k in d.kept_by_condition.items():
                kept[c] += k
        return generated, kept

    # -- reading decided shards -------------------------------------------------------
    def decided(self, shard: Shard) -> Decision | None:
        return self.staging.read_decision(shard)

    def rows(self, decision: Decision, columns: list[str] | None = None) -> pa.Table:
        """A decided shard's rows (training and excluded) back in plan order.

        Read from the staging folder, or from the catalog when a publish that
        was cut short had moved them in already.
        """
        cols = sorted(set(columns) | {"plan_index"}, key=SCHEMA.names.index) if columns else None
        here = self.staging.shards_dir

        def located(ref: ShardRef):
            waiting = here / ref.file.rsplit("/", 1)[-1]
            return waiting if waiting.is_file() else self.catalog.verified_shard(self.name, ref)

        parts = [pq.read_table(located(r), columns=cols, schema=SCHEMA) for r in decision.refs]
        t = pa.concat_tables(parts) if parts else SCHEMA.empty_table().select(cols or SCHEMA.names)
        return t.take(pc.sort_indices(t["plan_index"]))

    def decisions(self) -> list[Decision]:
        """Every shard's decision, in plan order (all must be decided)."""
        out = [self.decided(s) for s in self.shards]
        missing = [s.name for s, d in zip(self.shards, out) if d is None]
        if missing:
            raise CatalogError(f"cannot commit {self.name}: shards not decided: {', '.join(missing)}")
        return out  # type: ignore[return-value]

    # -- deciding -----------------------------------------------------------------
    def near_duplicate_pass(self, before: KeptSoFar | None) -> NearDuplicatePass:
        """The job's decision stage against its earlier sets (``before``: the run's kept rows so far)."""
        d = self.spec.dedup
        return NearDuplicatePass(d.threshold, build_rules(d), self.earlier, self.real, d.keep, before=before)

    def consume(self, shard: Shard, samples: list[Sample] | None) -> None:
        """Take the next shard in plan order: its samples in memory, or None when a worker staged them.

        ``keep: first`` decides it now (from memory: every image byte written
        once); ``keep: quality`` stages it for the decision over the whole job.
        """
        if self.spec.dedup.keep != "first":
            if samples is not None:
                self.staging.stage(shard, samples_to_table(samples))
            return
        if samples is not None:
            self.decide(shard, samples)
            return
        full = self.staging.read_staged(shard)
        self.decide(shard, samples_from_table(full.select(DECISION_INPUTS + evidence_columns())), full)
        self.rewritten += 1

    def catch_up(self, upto: int) -> None:
        """Add the kept rows of shards [next, upto), decided by an earlier (interrupted) run, to the run."""
        for s in self.shards[self.next : upto]:
            d = self.decided(s)
            if d is None:
                raise CatalogError(f"{self.name}: {s.name} is not decided yet; shards are decided in plan order")
            self.add_kept(samples_from_table(self.rows(d, ["sample_id", "embedding", "status"])))
        self.next = max(self.next, upto)

    def add_kept(self, samples: list[Sample]) -> None:
        add_kept(self.run, samples)

    def decide(self, shard: Shard, samples: list[Sample], table: pa.Table | None = None) -> Decision:
        """Decide ``shard``'s samples (plan order) and write its final shards and record.

        ``table``: the shard's full rows when they were staged (their images are
        not in ``samples``); else the rows are made from ``samples``.
        """
        self.basis  # noqa: B018 - fixes the basis and loads the indexes
        self.catch_up(shard.index)
        self.near_duplicate_pass(self.run)(samples)
        full = samples_to_table(samples) if table is None else write_decisions(table, samples)
        decision = self.write(shard, full)
        self.add_kept(samples)
        self.next = shard.index + 1
        return decision

    def write(self, shard: Shard, full: pa.Table) -> Decision:
        """Write a decided shard's rows as final shards, then its record."""
        refs = self.catalog.write_split(self.name, full, self.staging.shards_dir)
        failpoint("shard-files", f"{shard.name}: final shards written, decision record not yet")
        decision = Decision(shard=shard.index, refs=refs, counts=status_counts(r.rows_by_status for r in refs),
                            runs=distinct_runs(full), kept_by_condition=self.kept_by_condition(shard, full))
        self.staging.write_decision(shard, decision)
        return decision

    def kept_by_condition(self, shard: Shard, full: pa.Table) -> dict[int, int]:
        """A decided shard's kept rows by condition position (its round says which plan index is which)."""
        rnd = shard.round or first_round(self.spec)
        which = rnd.entries(shard.start - rnd.start, shard.stop - rnd.start)
        out: dict[int, int] = {}
        for i, status in zip(full["plan_index"].to_pylist(), full["status"].to_pylist()):
            if status == KEPT:
                c = which[i - shard.start][0]
                out[c] = out.get(c, 0) + 1
        return out

    def decide_whole_job(self) -> None:
        """``keep: quality``: decide every staged shard in one pass over the whole job (it visits rows by score)."""
        todo = [s for s in self.shards if self.decided(s) is None]
        if not todo:
            return
        missing = [s.name for s in todo if self.staging.staged_rows(s) is None]
        if missing:
            raise CatalogError(f"cannot commit {self.name}: shards not generated: {', '.join(missing)}")
        self.basis  # noqa: B018
        cols = DECISION_INPUTS + evidence_columns()
        tables = [self.staging.read_staged(s, cols) for s in todo]
        samples = samples_from_table(pa.concat_tables(tables))
        self.near_duplicate_pass(None)(samples)
        offset = 0
        for s, t in zip(todo, tables):
            self.write(s, write_decisions(self.staging.read_staged(s), samples[offset : offset + t.num_rows]))
            offset += t.num_rows
        self.rewritten += len(todo)
