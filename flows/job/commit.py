"""Publish a job's decided shards as a new version, rechecking against a head that moved.

The dataset lock is held only to publish the manifest and move HEAD: if
another version landed since the job's basis, its rows are checked outside
the lock (``flows.job.recheck``) and the publish is tried again against the
new head, as optimistic concurrency does. The version's FAISS index and id
index are built after the lock is released.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from catalog import Catalog, Manifest, RunRef
from catalog.layout import manifest_key
from catalog.store import HeadMoved
from catalog.tally import distinct_runs, status_counts
from flows.job.decisions import OrderedDecisions, version_vectors
from flows.job.recheck import recheck
from synthgen.failpoints import failpoint


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


def publish(job: OrderedDecisions, runs: list[RunRef]) -> CommitReport:
    """Commit the job's decided shards as the dataset's next version (``runs``: used when no row names one)."""
    spec, catalog, name = job.spec, job.catalog, job.name
    failpoint("before-commit", f"{name}: shards decided, version not committed")
    while True:
        job.rewritten += recheck(job)  # outside the lock: the rows committed since the basis, if any
        decisions = job.decisions()
        job_runs = distinct_runs(r for d in decisions for r in d.runs) or runs
        checked = job.basis.checked
        failpoint("publish", f"{name}: decisions hold against version {checked}")
        try:
            manifest = catalog.commit(
                name,
                [ref for d in decisions for ref in d.refs],
                expected_parent=checked,
                adopt_from=job.staging.shards_dir,
                job=spec.model_dump(mode="json"),
                job_digest=spec.digest(),
                runs=job_runs,
                embedding_model=job.embedder.name,
                message=f"{spec.name}: {spec.total_images if spec.kept_per_condition is None else job.generated} images",
                prov={
                    "wasGeneratedBy": {"activity": "synthgen.generate", "job": spec.name,
                                       "runs": [r.model_dump() for r in job_runs]},
                    "used": [spec.generator.model, job.embedder.name]
                    + ([spec.dedup.real_dataset] if spec.dedup.real_dataset else []),
                    "wasDerivedFrom": f"{name}@{checked}" if checked else None,
                },
            )
            break
        except HeadMoved:
            done = catalog.find_job(name, spec.digest())  # the same spec, committed by another run meanwhile
            if done is not None:
                return commit_report(catalog, done, reused=True)
    # After the lock: the next job's earlier set (from the parent's index already in memory).
    parent = job.earlier if getattr(job.earlier, "version", None) == manifest.parent else None
    version_vectors(catalog, f"{name}@{manifest.version}", job.embedder, parent=parent)
    report = commit_report(catalog, manifest, reused=False)
    report.rewritten_shards = job.rewritten
    return report


def commit_report(catalog: Catalog, m: Manifest, reused: bool) -> CommitReport:
    """What version ``m`` added, as a report (``reused``: an earlier run had committed it)."""
    added = [s for s in m.shards if s.sha256 in set(m.added_shards)]
    return CommitReport(
        dataset=m.dataset,
        version=m.version,
        reused=reused,
        counts=status_counts(s.rows_by_status for s in added),
        files=[catalog.where(f"{m.dataset}/{s.file}") for s in added if s.role == "train"],
        excluded_files=[catalog.where(f"{m.dataset}/{s.file}") for s in added if s.role == "excluded"],
        manifest_path=catalog.where(manifest_key(m.dataset, m.version)),
        manifest_sha256=catalog.manifest_sha256(m.dataset, m.version),
    )
