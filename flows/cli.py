"""The ``synthgen`` command line (Typer): running jobs, ingesting, listing, loading, auditing.

Heavy imports (torch, prefect, mlflow) happen inside commands, after the
data folder is configured, so ``synthgen --help`` is instant and Prefect
and MLflow always see the right folder. Commands live in three modules that
register on one app: this one, ``flows.cli_catalog`` and ``flows.cli_schedule``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table

from flows import cli_catalog, cli_quality, cli_remote, cli_schedule  # noqa: F401 - registers their commands on `app`
from flows.cli_common import _catalog, _fail, _paths, app, err, failing_on, out

REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "jobs" / "digits-demo.yaml"
DEMO_PARAMS = REPO / "params.yaml"  # DVC's params: the `demo` section tunes the demo job
DEMO_REAL = "digits-real"


SET_HELP = "Override a spec field: --set generator.steps=10 (repeatable; the value is YAML)."
PARAMS_HELP = "Merge a section of a params file over the spec, e.g. params.yaml:demo (DVC's params)."


def _run_job(spec_path: Path, params: str | None = None, assignments: list[str] | None = None) -> dict:
    from catalog import CatalogError
    from synthgen.spec import SpecError, load_params, load_spec, merge_overrides, parse_assignments

    with failing_on(SpecError):
        overrides = merge_overrides(load_params(params) if params else {}, parse_assignments(assignments or []))
        spec = load_spec(spec_path, overrides)  # validated before anything loads or is written
    paths = _paths()
    from catalog import Catalog
    from flows.generate import ShardFailed, generate_dataset, preflight
    from flows.schedule import ScheduleError

    with failing_on(CatalogError):
        preflight(spec, Catalog(paths.catalog))
    from flows.models import prefetch_models

    from flows.tracking import warm_up

    prefetch_models(spec)  # loads models on the second core while Prefect's server starts
    warm_up(paths.tracking_uri, paths.artifact_root)  # and opens MLflow's store
    err.print(f"[bold]synthgen[/] {spec.name}: {spec.total_images} images -> {spec.output.dataset} (data: {paths.root})")
    try:
        return generate_dataset(spec.model_dump(mode="json"), str(paths.root))
    except ScheduleError as exc:  # e.g. shards sent to a work pool without a long-lived Prefect server
        _fail(str(exc))
    except ShardFailed as exc:
        _fail(f"{exc}\nShards finished before it are staged; rerun the same command to resume from there.")


def _print_summary(r: dict) -> None:
    m = r["metrics"]
    c = r["counts"]
    t = Table(title=f"{r['job']} -> {r['dataset']}@{r['version']}" + ("  (already committed: reused)" if r["reused"] else ""))
    t.add_column("what")
    t.add_column("value", overflow="fold")
    t.add_row("generated", f"{sum(c.values())}")
    t.add_row("kept", f"{c.get('kept', 0)}")
    t.add_row("dropped: near-duplicate", f"{c.get('dropped_duplicate', 0)}")
    t.add_row("blocked: near-copy of real data", f"{c.get('blocked_real_copy', 0)}")
    if c.get("low_quality"):
        t.add_row("dropped: low CLIP alignment", f"{c['low_quality']}")
    t.add_row("throughput", f"{m['images_per_s']:.1f} images/s over {m['wall_s']:.1f} s (start-up {m['startup_s']:.1f} s)")
    t.add_row("dataset", f"{r['dataset']} version {r['version']}")
    folder = str(Path(r["files"][0]).parent) if r["files"] else "-"
    t.add_row("parquet", f"{len(r['files'])} new shard(s) in {folder}" if r["files"] else "(no new shards)")
    t.add_row("manifest", r["manifest"])
    t.add_row("sample grid", r["grid"])
    t.add_row("MLflow run", f"{r['mlflow_run_id']} ({r['mlflow_tracking_uri']})")
    t.add_row("Prefect flow run", f"{r['prefect_flow_run_name']} ({r['prefect_flow_run_id']})")
    out.print(t)


@app.command()
def run(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    params: str = typer.Option(None, "--params", help=PARAMS_HELP),
    assignments: list[str] = typer.Option(None, "--set", help=SET_HELP),
    json_out: Path = typer.Option(None, "--json", help="Also write the run's result (version, counts, metrics) as JSON."),
) -> None:
    """Run a job spec: generate, deduplicate, commit a version, log to MLflow."""
    result = _run_job(spec, params, assignments)
    if json_out:
        import json

        json_out.write_text(json.dumps(result, indent=2, default=str))
    _print_summary(result)


@app.command()
def ingest(
    folder: Path = typer.Argument(..., help="Folder with one sub-folder per class."),
    name: str = typer.Option(..., "--name", "-n", help="Real dataset name."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for the memorisation guard."),
    restricted: bool = typer.Option(False, help="Mark the dataset restricted (no export without a flag)."),
) -> None:
    """Ingest an image folder as a real dataset (class = sub-folder name)."""
    from catalog import IngestError, ingest_folder
    from catalog.ingest import scan
    from synthgen.embedder import load_embedder
    from synthgen.spec import EmbedderSpec

    with failing_on(IngestError):
        scan(folder)  # clear error before any model loads
    emb = load_embedder(EmbedderSpec(model=embedder))
    m = ingest_folder(_catalog(), name, folder, emb.embed_images, emb.name, restricted=restricted)
    out.print(f"ingested {m.rows} real images into [bold]{name}@{m.version}[/] ({emb.name})")


def _start_temporary_prefect_server():
    """Start the temporary Prefect server a flow would start, in a background thread.

    With no server configured, Prefect starts a temporary one (a subprocess)
    when the first flow runs, and waits ~10 s for it. Starting it earlier
    lets other start-up work overlap; the flow then finds it running (it is
    Prefect's own per-process singleton). Join the thread before running a
    flow. Does nothing when a server is configured.
    """
    import threading

    def start() -> None:
        from prefect.settings import get_current_settings

        if get_current_settings().api.url:
            return
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except Exception:  # noqa: BLE001 - the flow starts it again and reports the error
            pass

    thread = threading.Thread(target=start, name="synthgen-prefect-server", daemon=True)
    thread.start()
    return thread


@app.command()
def demo(assignments: list[str] = typer.Option(None, "--set", help=SET_HELP)) -> None:
    """Ingest the bundled real digits (once) and run jobs/digits-demo.yaml with params.yaml's `demo` knobs."""
    import tempfile

    from synthgen.digits import CLASS_NAMES, export_image_folder

    cat = _catalog()
    if not cat.exists(DEMO_REAL) or cat.head(DEMO_REAL) is None:
        server = _start_temporary_prefect_server()  # ~10 s, on the other core while the ingest runs
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_image_folder(Path(tmp) / "digits")
            (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
            ingest(folder, DEMO_REAL, "embedded:digits-clip", False)
        server.join()
    params = f"{DEMO_PARAMS}:demo" if DEMO_PARAMS.is_file() else None
    _print_summary(_run_job(DEMO_SPEC, params, assignments))


@app.command()
def datasets() -> None:
    """List datasets with origin, head version and row counts."""
    cat = _catalog()
    t = Table(title=f"datasets in {cat.root}")
    for col in ("name", "origin", "head", "rows", "kept", "restricted"):
        t.add_column(col)
    for name in cat.names():
        info, head = cat.info(name), cat.head(name)
        m = cat.manifest(name, head) if head else None
        t.add_row(
            name, info["origin"], str(head or "-"), str(m.rows if m else 0),
            str(m.rows_by_status.get("kept", 0) if m else 0), "yes" if info.get("restricted") else "",
        )
    out.print(t)


@app.command()
def versions(name: str = typer.Argument(..., help="Dataset name.")) -> None:
    """List a dataset's versions: time, parent, rows by status, job digest, runs."""
    from catalog import CatalogError

    cat = _catalog()
    with failing_on(CatalogError):
        ms = cat.versions(name)
    t = Table(title=f"{name} ({cat.info(name)['origin']})")
    for col in ("version", "created", "parent", "rows", "by status", "job digest", "MLflow runs"):
        t.add_column(col, overflow="fold")
    for m in ms:
        t.add_row(
            str(m.version), m.created_at[:19], str(m.parent or "-"), str(m.rows),
            ", ".join(f"{k}={v}" for k, v in sorted(m.rows_by_status.items())),
            (m.job_digest or "-")[:12], ", ".join(r.mlflow_run_id or "-" for r in m.runs) or "-",
        )
    out.print(t)


@app.command()
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    dest: Path = typer.Argument(..., help="A .parquet file, or a folder (PNG files, or a dataset with --format hf)."),
    status: str = typer.Option("kept", help="Row status to export ('all' for every row)."),
    allow_restricted: bool = typer.Option(False, help="Required to export a restricted dataset."),
    format: str = typer.Option(
        "auto", help="auto (.parquet: one file, else PNGs), hf (sharded Parquet + README.md for datasets.load_dataset)."
    ),
) -> None:
    """Export a version as one Parquet file, a sharded Hugging Face dataset folder, or PNGs with provenance."""
    from catalog import CatalogError, open_version
    from flows.export import export_hf, export_parquet, export_pngs

    if format not in ("auto", "hf"):
        _fail(f"--format must be auto or hf, not {format!r}")
    with failing_on(CatalogError):  # a restricted dataset raises here unless allowed (catalog.access)
        v = open_version(_catalog(), ref, allow_restricted)
        if format == "hf":
            n = export_hf(v, dest, status)
        else:
            n = export_parquet(v, dest, status) if dest.suffix == ".parquet" else export_pngs(v, dest, status)
    out.print(f"exported {n} rows of {v.ref} to {dest}")


@app.command()
def load(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    status: str = typer.Option("kept", help="Row status ('all' for every row)."),
    limit: int = typer.Option(5, help="Rows to show."),
    allow_restricted: bool = typer.Option(False, help="Required to read a restricted dataset."),
) -> None:
    """Open a version the way training code does and show a few rows."""
    from catalog import CatalogError, open_version

    cols = ["sample_id", "origin", "status", "label", "label_name", "prompt", "seed", "nn_similarity"]
    with failing_on(CatalogError):
        v = open_version(_catalog(), ref, allow_restricted)
        table = v.table(cols, status)
    out.print(f"{v.ref}: {table.num_rows} rows ({status}); files:\n  " + "\n  ".join(v.files))
    out.print(table.slice(0, limit).to_pandas().to_string(index=False))


@app.command()
def audit(
    target: str = typer.Argument(..., help="A sample id, or an image file to trace back."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for tracing edited files."),
    allow_restricted: bool = typer.Option(False, help="Required to show a row of a restricted dataset."),
) -> None:
    """Print a sample's whole lineage: provenance, versions, runs. Accepts an image file too."""
    from catalog import CatalogError
    from catalog import audit as run_audit

    sample_id = target
    if Path(target).is_file():
        sample_id = _trace(Path(target), embedder)
    with failing_on(CatalogError):
        records = run_audit(_catalog(), sample_id, allow_restricted)
    if not records:
        _fail(f"no sample {sample_id!r} in any committed version", code=1)
    for rec in records:
        t = Table(title=f"sample {sample_id} in {rec.dataset} (versions {', '.join(map(str, rec.versions))})")
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k, v in rec.row.items():
            if v is not None:
                t.add_row(k, str(v))
        t.add_row("shard", rec.shard)
        out.print(t)


def _trace(path: Path, embedder: str) -> str:
    """Find the sample an image file came from; print how it was matched."""
    from catalog.trace import by_embedding, by_pixel_hash
    from synthgen.embedder import load_embedder
    from synthgen.imaging import decode, pixel_sha256, png_text
    from synthgen.spec import EmbedderSpec

    img = decode(path.read_bytes())
    meta = png_text(img)
    cat = _catalog()
    exact = by_pixel_hash(cat, pixel_sha256(img))
    if meta.get("sample_id") and (not exact or exact[0].sample_id == meta["sample_id"]):
        verified = "pixels match the catalog" if exact else "pixels do NOT match the catalog row"
        out.print(f"{path}: provenance chunk names sample {meta['sample_id']} ({verified})")
        return meta["sample_id"]
    if exact:
        out.print(f"{path}: exact pixel match (sha256) -> {exact[0].sample_id} in {exact[0].dataset}")
        return exact[0].sample_id
    emb = load_embedder(EmbedderSpec(model=embedder))
    match = by_embedding(cat, emb.embed_images([img])[0], emb.name, image=img)
    if match is None:
        _fail(f"{path}: no exact match and no dataset embedded with {emb.name}", code=1)
    margin = f", {match.margin:.3f} closer than the runner-up" if match.margin is not None else ""
    out.print(f"{path}: no exact match; closest by CLIP then pixels is {match.sample_id} in {match.dataset} "
              f"(cosine {match.similarity:.4f}; pixel distance {match.pixel_distance:.3f}{margin}; "
              f"confidence {match.confidence})")
    if match.same_pixels:
        out.print(f"  rows with the same pixels: {', '.join(match.same_pixels)}")
    return match.sample_id


def entrypoint() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; committed versions are intact, rerun the job to resume")
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
