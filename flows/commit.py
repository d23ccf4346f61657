"""Decide every staged sample in plan order and commit the job's version.

Under the dataset's lock: the staged key columns are read back as samples,
the decision stage (``synthgen.dedup.NearDuplicatePass`` with the spec's
rules) writes status and evidence into them, each staged shard is rewritten
with those decisions as a content-addressed shard, and the version is
committed (atomic; HEAD moves last). Nothing here imports prefect or mlflow.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError, Manifest, RunRef
from catalog.schema import SCHEMA, samples_from_table, write_decisions
from catalog.vector_index import VersionIndex, version_index
from flows.models import get_embedder
from flows.settings import Paths
from flows.shard import staging_dir
from synthgen.dedup import NearDuplicatePass
from synthgen.embedder import Embedder
from synthgen.failpoints import failpoint
from synthgen.imaging import decode
from synthgen.plan import Shard
from synthgen.rules import build_rules, evidence_columns
from synthgen.spec import JobSpec

# what the decision stage reads of each staged row (not the images)
DECISION_INPUTS = ["sample_id", "embedding", "real_pixel_distance", "real_pixel_nn_id", "clip_score"]


@dataclass
class CommitReport:
    """The committed version and the dedup outcome."""

    dataset: str
    version: int
    reused: bool
    counts: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    manifest_path: str = ""
    manifest_sha256: str = ""


def _vectors(catalog: Catalog, ref: str, embedder: Embedder, parent: VersionIndex | None = None) -> VersionIndex:
    """Kept rows of a version as its persisted FAISS index, in the embedder's space.

    Loaded when the version's index exists and checks out, else built and
    persisted (``catalog.vector_index``); rows another model embedded are
    re-embedded. ``parent``: the previous version's index, already in memory.
    """
    def reembed(images: list[bytes]) -> np.ndarray:
        return embedder.embed_images([decode(b) for b in images])

    return version_index(catalog, ref, embedder.name, reembed, parent=parent)


def dedup_and_commit(spec: JobSpec, shards: list[Shard], paths: Paths, runs: list[RunRef]) -> CommitReport:
    """Decide every staged sample in plan order and commit a new version."""
    catalog = Catalog(paths.catalog)
    name = spec.output.dataset
    catalog.create(name, "synthetic")
    stage = staging_dir(paths, spec)
    files = [stage / f"{s.name}.parquet" for s in shards]
    with catalog.lock(name):
        done = catalog.find_job(name, spec.digest())
        if done is not None:
            shutil.rmtree(stage, ignore_errors=True)
            return _report(catalog, done, reused=True)
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CatalogError(f"cannot commit {name}: shards not generated: {', '.join(missing)}")
        embedder = get_embedder(spec)
        head = catalog.head(name)
        earlier = _vectors(catalog, f"{name}@{head}", embedder) if head else None
        real = None
        if spec.dedup.real_dataset:
            if catalog.info(spec.dedup.real_dataset)["origin"] != "real":
                raise CatalogError(f"dedup.real_dataset {spec.dedup.real_dataset!r} is not a real dataset")
            real = _vectors(catalog, spec.dedup.real_dataset, embedder)
        samples = samples_from_table(pa.concat_tables(
            pq.read_table(f, columns=DECISION_INPUTS + evidence_columns()) for f in files))
        d = spec.dedup
        NearDuplicatePass(d.threshold, build_rules(d), earlier, real, d.keep)(samples)
        refs, offset = [], 0
        for f in files:
            table = pq.read_table(f, schema=SCHEMA)
            refs.append(catalog.write_shard(name, write_decisions(table, samples[offset : offset + table.num_rows])))
            offset += table.num_rows
        job_runs = _runs_of(files) or runs
        failpoint("before-commit", f"{name}: shards written, version not committed")
        manifest = catalog.commit(
            name,
            refs,
            expected_parent=head,
            job=spec.model_dump(mode="json"),
            job_digest=spec.digest(),
            runs=job_runs,
            embedding_model=embedder.name,
            message=f"{spec.name}: {spec.total_images} images",
            prov={
                "wasGeneratedBy": {"activity": "synthgen.generate", "job": spec.name, "runs": [r.model_dump() for r in job_runs]},
                "used": [spec.generator.model, embedder.name] + ([spec.dedup.real_dataset] if real else []),
                "wasDerivedFrom": f"{name}@{head}" if head else None,
            },
        )
        _vectors(catalog, f"{name}@{manifest.version}", embedder, parent=earlier)  # ready for the next job
    shutil.rmtree(stage, ignore_errors=True)
    return _report(catalog, manifest, reused=False)


def _runs_of(files: list[Path]) -> list[RunRef]:
    """Distinct (Prefect, MLflow) run ids found in staged shards (a resumed job has several)."""
    seen: dict[tuple, RunRef] = {}
    for f in files:
        t = pq.read_table(f, columns=["prefect_flow_run_id", "mlflow_run_id"])
        for p, m in zip(t["prefect_flow_run_id"].to_pylist(), t["mlflow_run_id"].to_pylist()):
            seen.setdefault((p, m), RunRef(prefect_flow_run_id=p, mlflow_run_id=m))
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
        files=[str(catalog.path(m.dataset) / s.file) for s in added],
        manifest_path=str(catalog.manifest_path(m.dataset, m.version)),
        manifest_sha256=catalog.manifest_sha256(m.dataset, m.version),
    )
