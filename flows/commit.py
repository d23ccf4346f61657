"""Commit a job's version: decide what is left, bring the decisions up to the head, publish.

Shards were mostly decided and written in final form as they were generated
(``flows.decide``); the commit decides, in plan order, those that were staged
undecided, then publishes. The dataset lock is held only to publish the
manifest and move HEAD: if another version landed since the job's basis,
its rows are checked outside the lock (``flows.recheck``) and the publish
is tried again against the new head, as optimistic concurrency does. The
version's FAISS index and id index are built after the lock is released.
Nothing here imports prefect or mlflow.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from catalog import Catalog, CatalogError, Manifest, RunRef
from catalog.store import HeadMoved
from flows.decide import decider_for, forget, shard_dir, vectors
from flows.recheck import recheck
from flows.settings import Paths
from flows.shard import staging_dir
from synthgen.failpoints import failpoint
from synthgen.plan import Shard
from synthgen.spec import JobSpec


@dataclass
class CommitReport:
    """The committed version and the dedup outcome."""

    dataset: str
    version: int
    reused: bool
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the job's new training shards (kept rows)
    excluded_files: list[str] = field(default_factory=list)  # its dropped and blocked rows, with evidence
    manifest_path: str = ""
    manifest_sha256: str = ""
    rewritten_shards: int = 0  # shards written a second time: staged undecided, or changed by a recheck


def dedup_and_commit(spec: JobSpec, shards: list[Shard], paths: Paths, runs: list[RunRef],
                     catalog: Catalog | None = None) -> CommitReport:
    """Decide the job's undecided shards in plan order and commit a new version.

    ``catalog``: the catalog at ``paths.catalog`` to publish through (e.g. one with a lock-timing hook).
    """
    catalog = catalog or Catalog(paths.catalog)
    name = spec.output.dataset
    catalog.create(name, "synthetic")
    stage = staging_dir(paths, spec)
    done = catalog.find_job(name, spec.digest())
    if done is not None:
        return _reuse(catalog, done, stage, spec, paths)
    decider = decider_for(spec, paths)
    if [s.index for s in shards] != [s.index for s in decider.shards]:
        raise CatalogError(f"cannot commit {name}: the shards given are not the job's plan")
    staged = sum(decider.decided(s) is None for s in decider.shards)
    decider.decide_staged()
    failpoint("before-commit", f"{name}: shards decided, version not committed")
    rewritten = staged
    while True:
        rewritten += recheck(decider)  # outside the lock: the rows committed since the basis, if any
        decisions = decider.decisions()
        job_runs = _distinct([r for d in decisions for r in d.runs]) or runs
        failpoint("publish", f"{name}: decisions hold against version {decider.basis.checked}")
        try:
            manifest = catalog.commit(
                name,
                [ref for d in decisions for ref in d.refs],
                expected_parent=decider.basis.checked,
                adopt_from=shard_dir(decider.stage),
                job=spec.model_dump(mode="json"),
                job_digest=spec.digest(),
                runs=job_runs,
                embedding_model=decider.embedder.name,
                message=f"{spec.name}: {spec.total_images} images",
                prov={
                    "wasGeneratedBy": {"activity": "synthgen.generate", "job": spec.name,
                                       "runs": [r.model_dump() for r in job_runs]},
                    "used": [spec.generator.model, decider.embedder.name]
                    + ([spec.dedup.real_dataset] if spec.dedup.real_dataset else []),
                    "wasDerivedFrom": f"{name}@{decider.basis.checked}" if decider.basis.checked else None,
                },
            )
            break
        except HeadMoved:
            done = catalog.find_job(name, spec.digest())  # the same spec, committed by another run meanwhile
            if done is not None:
                return _reuse(catalog, done, stage, spec, paths)
    # After the lock: the next job's earlier set (from the parent's index already in memory).
    parent = decider.earlier if getattr(decider.earlier, "version", None) == manifest.parent else None
    vectors(catalog, f"{name}@{manifest.version}", decider.embedder, parent=parent)
    forget(spec, paths)
    shutil.rmtree(stage, ignore_errors=True)
    report = _report(catalog, manifest, reused=False)
    report.rewritten_shards = rewritten
    return report


def _reuse(catalog: Catalog, done: Manifest, stage, spec: JobSpec, paths: Paths) -> CommitReport:
    forget(spec, paths)
    shutil.rmtree(stage, ignore_errors=True)
    return _report(catalog, done, reused=True)


def _distinct(runs: list[RunRef]) -> list[RunRef]:
    seen: dict[tuple, RunRef] = {}
    for r in runs:
        seen.setdefault((r.prefect_flow_run_id, r.mlflow_run_id), r)
    return list(seen.values())


def _report(catalog: Catalog, m: Manifest, reused: bool) -> CommitReport:
    added = [s for s in m.shards if s.sha256 in set(m.added_shards)]
    counts: dict[str, int] = {}
    for s in added:
        for k, v in s.rows_by_status.items():
            counts[k] = counts.get(k, 0) + v
    return CommitReport(
        dataset=m.dataset,
        version=m.version,
        reused=reused,
        counts=counts,
        files=[str(catalog.path(m.dataset) / s.file) for s in added if s.role == "train"],
        excluded_files=[str(catalog.path(m.dataset) / s.file) for s in added if s.role == "excluded"],
        manifest_path=str(catalog.manifest_path(m.dataset, m.version)),
        manifest_sha256=catalog.manifest_sha256(m.dataset, m.version),
    )
