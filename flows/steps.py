"""The job's stages as plain functions; Prefect tasks in ``flows.generate`` wrap them.

1. ``generate_shard``: sample, encode and embed one shard of the plan and
   stage it as Parquet (idempotent: a staged shard is reused on rerun).
2. ``dedup_and_commit``: under the dataset's lock, decide every sample in
   plan order against the prior index, write final content-addressed shards
   and commit the version (atomic; HEAD moves last).
3. ``write_grid``: a contact sheet of kept samples for MLflow and the README.

Nothing here imports prefect or mlflow, so the bench and tests can run the
same stages bare.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import Catalog, CatalogError, Manifest, RunRef, open_version, samples_to_table
from catalog.guard import pixel_guard
from catalog.schema import SCHEMA
from catalog.store import write_parquet_atomic
from catalog.vector_index import VersionIndex, version_index
from flows.settings import Paths
from synthgen import __version__
from synthgen.dedup import Decisions, decide
from synthgen.embedder import Embedder, load_embedder
from synthgen.engine import run_samples
from synthgen.failpoints import failpoint
from synthgen.generators import Generator, load_generator
from synthgen.imaging import decode, make_grid
from synthgen.memorisation import PixelGuard
from synthgen.plan import Shard, make_plan
from synthgen.records import Provenance
from synthgen.runtime import code_commit, library_version, set_threads
from synthgen.spec import EmbedderSpec, GeneratorSpec, JobSpec


@dataclass
class ShardReport:
    """What one shard task did."""

    shard: int
    rows: int
    reused: bool
    sampling_s: float = 0.0
    wall_s: float = 0.0


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


# -- model cache: one load per process, shared by all shards -----------------
@lru_cache(maxsize=4)
def _generator(gen_json: str, kind: str, class_ids: tuple[int, ...]) -> Generator:
    spec = GeneratorSpec.model_validate_json(gen_json)
    set_threads(spec.threads)
    return load_generator(spec, kind, list(class_ids))


@lru_cache(maxsize=4)
def _embedder(emb_json: str) -> Embedder:
    return load_embedder(EmbedderSpec.model_validate_json(emb_json))


_load_lock = threading.Lock()  # one loader at a time: a prefetch and a task never load twice


def get_generator(spec: JobSpec) -> Generator:
    """The job's generator, loaded once per process."""
    ids = tuple(c.id for c in spec.conditioning.classes or [])
    with _load_lock:
        return _generator(spec.generator.model_dump_json(), spec.conditioning.kind, ids)


def get_embedder(spec: JobSpec) -> Embedder:
    """The job's embedder, loaded once per process."""
    with _load_lock:
        return _embedder(spec.embedder.model_dump_json())


def prefetch_models(spec: JobSpec) -> threading.Thread:
    """Load the models in a background thread (e.g. while Prefect's server starts).

    Errors are not raised here: the flow's own load raises them again, in
    the right place.
    """

    def load() -> None:
        try:
            get_generator(spec)
            get_embedder(spec)
        except Exception:  # noqa: BLE001 - reported by the flow's load task
            pass

    thread = threading.Thread(target=load, name="synthgen-prefetch", daemon=True)
    thread.start()
    return thread


@lru_cache(maxsize=2)
def _guard(catalog_root: str, real_ref: str, manifest_sha: str) -> PixelGuard:
    return pixel_guard(open_version(Catalog(catalog_root), real_ref))


def get_guard(spec: JobSpec, paths: Paths) -> PixelGuard | None:
    """The pixel-space memorisation guard over the spec's real dataset (head), if any."""
    real = spec.dedup.real_dataset
    if not real or spec.dedup.pixel_threshold is None:
        return None
    cat = Catalog(paths.catalog)
    head = cat.head(real)
    with _load_lock:
        return _guard(str(paths.catalog), f"{real}@{head}", cat.manifest_sha256(real, head))


def staging_dir(paths: Paths, spec: JobSpec) -> Path:
    """Staged shards of one job (keyed by spec digest, so reruns find them)."""
    return paths.staging / spec.output.dataset / spec.digest()[:24]


def provenance_for(spec: JobSpec, gen: Generator, emb: Embedder, runs: RunRef) -> Provenance:
    """The fields every sample of this run shares."""
    return Provenance(
        job_name=spec.name,
        job_digest=spec.digest(),
        model_id=gen.model_id,
        model_weights_sha256=gen.weights_sha256,
        pipeline_class=gen.pipeline_class,
        scheduler=gen.scheduler_name,
        scheduler_config=gen.scheduler_config,
        num_inference_steps=spec.generator.steps,
        guidance_scale=spec.generator.guidance_scale,
        batch_size=spec.generator.batch_size,
        dtype=str(gen.dtype).removeprefix("torch."),
        device=gen.device,
        torch_version=library_version("torch"),
        diffusers_version=library_version("diffusers"),
        synthgen_version=__version__,
        code_commit=code_commit(),
        embedding_model=emb.name,
        dedup_threshold=spec.dedup.threshold,
        real_threshold=spec.dedup.real_threshold,
        pixel_threshold=spec.dedup.pixel_threshold if spec.dedup.real_dataset else None,
        real_dataset=spec.dedup.real_dataset,
        prefect_flow_run_id=runs.prefect_flow_run_id,
        mlflow_run_id=runs.mlflow_run_id,
    )


def generate_shard(spec: JobSpec, shard: Shard, paths: Paths, runs: RunRef, on_batch=None) -> ShardReport:
    """Stage one shard: reuse it if a previous (crashed) run already staged it."""
    out = staging_dir(paths, spec) / f"{shard.name}.parquet"
    if out.is_file():
        return ShardReport(shard.index, pq.read_metadata(out).num_rows, reused=True)
    t0 = time.perf_counter()
    gen, emb = get_generator(spec), get_embedder(spec)
    # OpenMP thread settings are per calling thread: set them where sampling runs
    # (the models may have been loaded by the prefetch thread).
    set_threads(spec.generator.threads)
    samples = make_plan(spec, shard.start, shard.stop)
    cond = spec.conditioning
    caption = (lambda s: cond.caption(s.class_name)) if cond.kind == "class" else (lambda s: s.prompt)
    stats = run_samples(samples, gen, emb, provenance_for(spec, gen, emb, runs), caption, on_batch,
                        guard=get_guard(spec, paths))
    write_parquet_atomic(samples_to_table(samples), out)
    return ShardReport(shard.index, len(samples), False, stats.sampling_s, time.perf_counter() - t0)


def _vectors(catalog: Catalog, ref: str, embedder: Embedder, parent: VersionIndex | None = None) -> VersionIndex:
    """Kept rows of a version as its persisted FAISS index, in the embedder's space.

    Loaded when the version's index exists and checks out, else built and
    persisted (``catalog.vector_index``); rows another model embedded are
    re-embedded. ``parent``: the previous version's index, already in memory.
    """
    def reembed(images: list[bytes]) -> np.ndarray:
        return embedder.embed_images([decode(b) for b in images])

    return version_index(catalog, ref, embedder.name, reembed, parent=parent)


def apply_decisions(table: pa.Table, d: Decisions, start: int, stop: int) -> pa.Table:
    """Set the dedup columns of ``table`` from decisions ``[start, stop)`` (plan order)."""
    cols = {
        "status": pa.array(d.status[start:stop], pa.string()),
        "drop_reason": pa.array(d.drop_reason[start:stop], pa.string()),
        "nn_id": pa.array(d.nn_id[start:stop], pa.string()),
        "nn_source": pa.array(d.nn_source[start:stop], pa.string()),
        "nn_similarity": pa.array(d.nn_similarity[start:stop], pa.float32()),
        "real_nn_id": pa.array(d.real_nn_id[start:stop], pa.string()),
        "real_nn_similarity": pa.array(d.real_nn_similarity[start:stop], pa.float32()),
    }
    for name, arr in cols.items():
        table = table.set_column(SCHEMA.get_field_index(name), name, arr)
    return table


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
        keys = pa.concat_tables(
            pq.read_table(f, columns=["sample_id", "embedding", "real_pixel_distance", "real_pixel_nn_id", "clip_score"])
            for f in files
        )
        emb = np.asarray(keys["embedding"].combine_chunks().values.to_numpy(), np.float32).reshape(keys.num_rows, -1)
        pixel = list(zip(keys["real_pixel_distance"].to_pylist(), keys["real_pixel_nn_id"].to_pylist()))
        decisions = decide(
            keys["sample_id"].to_pylist(), emb, spec.dedup.threshold, spec.dedup.real_threshold, earlier, real,
            real_pixel=pixel if real else None,
            pixel_threshold=spec.dedup.pixel_threshold,
            scores=keys["clip_score"].to_pylist(),
            min_score=spec.dedup.min_clip_score,
            keep=spec.dedup.keep,
        )
        refs, offset = [], 0
        for f in files:
            table = pq.read_table(f, schema=SCHEMA)
            refs.append(catalog.write_shard(name, apply_decisions(table, decisions, offset, offset + table.num_rows)))
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


def write_grid(catalog: Catalog, dataset: str, version: int, files: list[str], per_row: int = 10) -> Path:
    """A grid of kept samples (one row per class or prompt) in the version's folder."""
    rows: dict[str, list] = {}
    for f in files:
        t = pq.read_table(f, columns=["image", "label", "label_name", "prompt", "status"])
        t = t.filter(pc.equal(t["status"], "kept"))
        for img, name, prompt in zip(
            t["image"].combine_chunks().field("bytes").to_pylist(), t["label_name"].to_pylist(), t["prompt"].to_pylist()
        ):
            row = rows.setdefault(name or prompt or "", [])
            if len(row) < per_row:
                row.append(decode(img))
    out = catalog.version_dir(dataset, version) / "grid.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(list(rows.values())[:32]).save(out)
    return out


def write_real_pairs(catalog: Catalog, dataset: str, version: int, files: list[str], real_ref: str,
                     n: int = 8) -> Path | None:
    """Side-by-side (synthetic | real) image of the run's closest pairs to real data, blocked first."""
    rows = []
    for f in files:
        t = pq.read_table(f, columns=["image", "status", "real_pixel_distance", "real_pixel_nn_id",
                                      "real_nn_similarity", "real_nn_id"])
        rows += t.to_pylist()
    if not rows:
        return None
    # closest by pixel distance when the guard ran, else by CLIP similarity
    key = (lambda r: (r["status"] != "blocked_real_copy", r["real_pixel_distance"] if r["real_pixel_distance"]
                      is not None else 2 - (r["real_nn_similarity"] or -1)))
    top = sorted(rows, key=key)[:n]
    real_id = lambda r: r["real_pixel_nn_id"] if r["real_pixel_distance"] is not None else r["real_nn_id"]  # noqa: E731
    real = open_version(catalog, real_ref)
    # A restricted real set's images stay in the catalog: the report shows its pairs' synthetic side only.
    real_by_id = {} if real.restricted else real.images([real_id(r) for r in top if real_id(r)])
    pairs = []
    for r in top:
        rid = real_id(r)
        if rid in real_by_id:
            pairs.append([decode(r["image"]["bytes"]), decode(real_by_id[rid])])
        elif rid and real.restricted:
            pairs.append([decode(r["image"]["bytes"])])
    if not pairs:
        return None
    out = catalog.version_dir(dataset, version) / "closest-real-pairs.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(pairs).save(out)
    return out


def summary_metrics(report: CommitReport, shard_reports: list[ShardReport], wall_s: float) -> dict[str, float]:
    """The numbers MLflow and the CLI summary show."""
    generated = sum(report.counts.values())
    fresh = sum(r.rows for r in shard_reports if not r.reused)
    sampling = sum(r.sampling_s for r in shard_reports)
    return {
        "generated": generated,
        "kept": report.counts.get("kept", 0),
        "dropped_duplicate": report.counts.get("dropped_duplicate", 0),
        "blocked_real_copy": report.counts.get("blocked_real_copy", 0),
        "low_quality": report.counts.get("low_quality", 0),
        "generated_this_run": fresh,
        "shards_reused": sum(r.reused for r in shard_reports),
        "images_per_s": fresh / wall_s if wall_s > 0 else 0.0,
        "sampling_s": sampling,
        "wall_s": wall_s,
    }


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
