"""The ``synthgen`` command line (Typer).

Heavy imports (torch, prefect, mlflow) happen inside commands, after the
data folder is configured, so ``synthgen --help`` is instant and Prefect
and MLflow always see the right folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from flows.settings import DATA_ENV, Paths, configure

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic image datasets with provenance.")
out = Console()
err = Console(stderr=True)
REPO = Path(__file__).resolve().parent.parent
DEMO_SPEC = REPO / "jobs" / "digits-demo.yaml"
DEMO_REAL = "digits-real"


class _State:
    data_dir: Optional[str] = None


def _paths() -> Paths:
    return configure(_State.data_dir)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@app.callback()
def main(
    data_dir: Optional[str] = typer.Option(
        None, "--data-dir", "-d", envvar=DATA_ENV, help="All state lives here (default ./synthgen-data)."
    ),
) -> None:
    _State.data_dir = data_dir


def _catalog():
    from catalog import Catalog

    return Catalog(_paths().catalog)


def _run_job(spec_path: Path) -> dict:
    from catalog import CatalogError
    from synthgen.spec import SpecError, load_spec

    try:
        spec = load_spec(spec_path)  # validated before anything loads or is written
    except SpecError as exc:
        _fail(str(exc))
    paths = _paths()
    from catalog import Catalog
    from flows.generate import generate_dataset, preflight

    try:
        preflight(spec, Catalog(paths.catalog))
    except CatalogError as exc:
        _fail(str(exc))
    from flows.steps import prefetch_models

    prefetch_models(spec)  # loads models on the second core while Prefect's server starts
    err.print(f"[bold]synthgen[/] {spec.name}: {spec.total_images} images -> {spec.output.dataset} (data: {paths.root})")
    return generate_dataset(spec.model_dump(mode="json"), str(paths.root))


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
def run(spec: Path = typer.Argument(..., help="Job spec YAML.")) -> None:
    """Run a job spec: generate, deduplicate, commit a version, log to MLflow."""
    _print_summary(_run_job(spec))


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

    try:
        scan(folder)  # clear error before any model loads
    except IngestError as exc:
        _fail(str(exc))
    emb = load_embedder(EmbedderSpec(model=embedder))
    m = ingest_folder(_catalog(), name, folder, emb.embed_images, emb.name, restricted=restricted)
    out.print(f"ingested {m.rows} real images into [bold]{name}@{m.version}[/] ({emb.name})")


@app.command()
def demo() -> None:
    """Ingest the bundled real digits (once) and run jobs/digits-demo.yaml."""
    import tempfile

    from synthgen.digits import CLASS_NAMES, export_image_folder

    cat = _catalog()
    if not cat.exists(DEMO_REAL) or cat.head(DEMO_REAL) is None:
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_image_folder(Path(tmp) / "digits")
            (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
            ingest(folder, DEMO_REAL, "embedded:digits-clip", False)
    _print_summary(_run_job(DEMO_SPEC))


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
    try:
        ms = cat.versions(name)
    except CatalogError as exc:
        _fail(str(exc))
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
    dest: Path = typer.Argument(..., help="A .parquet file, or a folder for PNG files."),
    status: str = typer.Option("kept", help="Row status to export ('all' for every row)."),
    allow_restricted: bool = typer.Option(False, help="Required to export a restricted dataset."),
) -> None:
    """Export a version as one Parquet file or as PNGs with provenance inside each file."""
    from catalog import CatalogError, open_version
    from flows.export import export_parquet, export_pngs

    cat = _catalog()
    try:
        v = open_version(cat, ref)
    except CatalogError as exc:
        _fail(str(exc))
    if cat.info(v.name).get("restricted") and not allow_restricted:
        _fail(f"{v.name} is restricted; pass --allow-restricted to export it")
    n = export_parquet(v, dest, status) if dest.suffix == ".parquet" else export_pngs(v, dest, status)
    out.print(f"exported {n} rows of {v.ref} to {dest}")


@app.command()
def load(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    status: str = typer.Option("kept", help="Row status ('all' for every row)."),
    limit: int = typer.Option(5, help="Rows to show."),
) -> None:
    """Open a version the way training code does and show a few rows."""
    from catalog import CatalogError, open_version

    try:
        v = open_version(_catalog(), ref)
    except CatalogError as exc:
        _fail(str(exc))
    cols = ["sample_id", "origin", "status", "label", "label_name", "prompt", "seed", "nn_similarity"]
    table = v.table(cols, status)
    out.print(f"{v.ref}: {table.num_rows} rows ({status}); files:\n  " + "\n  ".join(v.files))
    out.print(table.slice(0, limit).to_pandas().to_string(index=False))


@app.command()
def audit(
    target: str = typer.Argument(..., help="A sample id, or an image file to trace back."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for tracing edited files."),
) -> None:
    """Print a sample's whole lineage: provenance, versions, runs. Accepts an image file too."""
    from catalog import audit as run_audit

    sample_id = target
    if Path(target).is_file():
        sample_id = _trace(Path(target), embedder)
    records = run_audit(_catalog(), sample_id)
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
    match = by_embedding(cat, emb.embed_images([img])[0], emb.name)
    if match is None:
        _fail(f"{path}: no exact match and no dataset embedded with {emb.name}", code=1)
    margin = f", margin {match.margin:.4f} to the runner-up" if match.margin is not None else ""
    out.print(f"{path}: no exact match; nearest by CLIP is {match.sample_id} in {match.dataset} "
              f"(cosine {match.similarity:.4f}{margin}; confidence {match.confidence})")
    return match.sample_id


@app.command()
def verify(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    regenerate: int = typer.Option(0, help="Also regenerate N synthetic samples and compare pixel hashes."),
) -> None:
    """Check integrity: shard hashes, row counts, schema, manifest hash chain (exit 1 on any problem)."""
    from catalog import parse_ref
    from catalog.verify import verify as run_verify

    name, version = parse_ref(ref)
    report = run_verify(_catalog(), name, version)
    for problem in report.problems:
        err.print(f"[red]FAIL[/] {problem}")
    out.print(
        f"{name}@{report.version}: {report.manifests_checked} manifests, {report.shards_checked} shards checked; "
        f"head manifest sha256 {report.head_sha256}; " + ("[green]OK[/]" if report.ok else "[red]CORRUPT[/]")
    )
    ok = report.ok
    if regenerate:
        from flows.regenerate import regenerate_sample_check

        result = regenerate_sample_check(_catalog(), ref, regenerate)
        for line in result.mismatches:
            err.print(f"[red]MISMATCH[/] {line}")
        out.print(f"regenerated {result.checked} samples: {result.matched} identical, {len(result.mismatches)} differ")
        ok = ok and not result.mismatches
    if not ok:
        raise typer.Exit(1)


@app.command()
def diff(a: str = typer.Argument(..., help="NAME@A"), b: str = typer.Argument(..., help="NAME@B")) -> None:
    """Rows added and removed between two versions, and how their job specs differ."""
    from catalog.diff import diff as run_diff

    d = run_diff(_catalog(), a, b)
    out.print(f"{d.a} -> {d.b}: +{len(d.added)} rows, -{len(d.removed)} rows")
    for sid in d.removed[:20]:
        out.print(f"  - {sid}")
    for sid in d.added[:20]:
        out.print(f"  + {sid}")
    for key, (old, new) in d.spec_changes.items():
        out.print(f"  spec {key}: {old!r} -> {new!r}")


@app.command()
def takedown(
    name: str = typer.Argument(..., help="Dataset name."),
    where: str = typer.Option(..., help="SQL filter, e.g. \"sample_id = 'abc'\" or \"prompt LIKE '%logo%'\"."),
    reason: str = typer.Option(..., help="Why (recorded in the new version's manifest)."),
) -> None:
    """Commit a new version without the rows a filter selects (old versions stay readable)."""
    from catalog import CatalogError
    from catalog.derive import takedown as run_takedown

    try:
        m = run_takedown(_catalog(), name, where, reason)
    except CatalogError as exc:
        _fail(str(exc))
    out.print(f"{name}@{m.version}: {m.message}")


@app.command()
def mix(
    synthetic: str = typer.Argument(..., help="Synthetic NAME@VERSION."),
    real: str = typer.Argument(..., help="Real NAME@VERSION."),
    name: str = typer.Option(..., "--name", "-n", help="Name of the mixed dataset."),
    ratio: float = typer.Option(..., help="Synthetic share of the mix, e.g. 0.3."),
    seed: int = typer.Option(0, help="Seed for choosing the synthetic rows."),
    allow_restricted: bool = typer.Option(False, help="Required to mix a restricted real dataset."),
) -> None:
    """Build a training mix of real and synthetic rows at an explicit ratio."""
    from catalog import CatalogError
    from catalog.derive import mix as run_mix

    try:
        m = run_mix(_catalog(), synthetic, real, ratio, name, seed, allow_restricted)
    except CatalogError as exc:
        _fail(str(exc))
    out.print(f"{name}@{m.version}: {m.message}")


@app.command()
def query(sql: str = typer.Argument(..., help="SQL; views: <dataset> (head) and <dataset>_v<N>, '-' -> '_'.")) -> None:
    """Run DuckDB SQL over the catalog's Parquet."""
    from catalog import CatalogError
    from catalog.query import query as run_query

    try:
        table = run_query(_catalog(), sql)
    except CatalogError as exc:
        _fail(str(exc))
    drop = [c for c in ("image", "embedding") if c in table.column_names]
    out.print(table.drop(drop).to_pandas().to_string(index=False, max_colwidth=60))
    out.print(f"({table.num_rows} rows)")


@app.command()
def card(ref: str = typer.Argument(..., help="NAME or NAME@VERSION."), write: bool = typer.Option(False, help="Also write card.md into the version's folder.")) -> None:
    """Print a version's dataset card (Markdown)."""
    from catalog.card import render_card, write_card

    cat = _catalog()
    out.print(render_card(cat, ref), markup=False, highlight=False)
    if write:
        out.print(f"wrote {write_card(cat, ref)}")


@app.command("dedup-report")
def dedup_report_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    png: Optional[Path] = typer.Option(None, help="Histogram PNG (default: in the version's folder)."),
) -> None:
    """Nearest-neighbour similarity histogram and what other thresholds would drop."""
    from catalog import open_version
    from catalog.dedup_report import dedup_report

    cat = _catalog()
    v = open_version(cat, ref)
    target = png or cat.version_dir(v.name, v.version) / "dedup-histogram.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    r = dedup_report(v, target)
    out.print(f"{r.ref}: {r.rows} synthetic rows; " + ", ".join(f"{k}={n}" for k, n in sorted(r.by_status.items())))
    t = Table(title="rows at or above each cosine threshold")
    for col in ("threshold", "near a kept synthetic sample", "near a real sample"):
        t.add_column(col)
    for x in r.would_drop:
        t.add_row(f"{x:.2f}", str(r.would_drop[x]), str(r.would_block[x]))
    out.print(t)
    out.print("examples nearest the threshold:")
    for e in r.near_threshold:
        out.print(f"  {e['sample_id']} {e['status']:<18} nn {e['nn_id']} ({e['nn_source']}) cos {e['nn_similarity']}")
    out.print(f"histogram: {r.histogram}")


@app.command("rededup")
def rededup_cmd(
    name: str = typer.Argument(..., help="Synthetic dataset name (its head is re-decided)."),
    threshold: float = typer.Option(..., help="New near-duplicate cosine threshold."),
    real_threshold: Optional[float] = typer.Option(None, help="New CLIP threshold against real data."),
    pixel_threshold: Optional[float] = typer.Option(None, help="New pixel-distance threshold against real data."),
    min_clip_score: Optional[float] = typer.Option(None, help="Mark rows below this alignment low_quality."),
    keep: str = typer.Option("first", help="'first' (plan order) or 'quality' (best CLIP alignment wins)."),
) -> None:
    """Re-deduplicate a version at new thresholds from stored evidence (a new derived version)."""
    from catalog import CatalogError
    from flows.rededup import rededup

    try:
        m = rededup(_catalog(), name, threshold, real_threshold, pixel_threshold, min_clip_score, keep)
    except CatalogError as exc:
        _fail(str(exc))
    out.print(f"{name}@{m.version}: {m.message}")


@app.command()
def search(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    text: str = typer.Argument(..., help="What to look for, e.g. 'a seven with a crossbar'."),
    where: Optional[str] = typer.Option(None, help="SQL filter on the rows, e.g. 'label = 7'."),
    k: int = typer.Option(10, help="How many results."),
    sheet: Optional[Path] = typer.Option(None, help="Write a contact sheet PNG of the results."),
    embedder: str = typer.Option("embedded:digits-clip", help="Must be the model the rows were embedded with."),
) -> None:
    """Nearest samples to a text by CLIP embedding, filtered by metadata."""
    from catalog import CatalogError, open_version
    from catalog.search import search as run_search
    from synthgen.embedder import load_embedder
    from synthgen.imaging import decode, make_grid
    from synthgen.spec import EmbedderSpec

    v = open_version(_catalog(), ref)
    emb = load_embedder(EmbedderSpec(model=embedder))
    if v.manifest.embedding_model and v.manifest.embedding_model != emb.name:
        _fail(f"{v.ref} was embedded with {v.manifest.embedding_model}, not {emb.name}; pass --embedder")
    try:
        hits = run_search(v, emb.embed_texts([text])[0], k, where)
    except CatalogError as exc:
        _fail(str(exc))
    for sid, sim in hits:
        out.print(f"{sid}  {sim:.4f}")
    if sheet and hits:
        want = {sid for sid, _ in hits}
        rows = [r for r in v.table(["sample_id", "image"]).to_pylist() if r["sample_id"] in want]
        by_id = {r["sample_id"]: decode(r["image"]["bytes"]) for r in rows}
        make_grid([[by_id[sid] for sid, _ in hits]]).save(sheet)
        out.print(f"contact sheet: {sheet}")


@app.command()
def status(limit: int = typer.Option(10, help="How many recent runs.")) -> None:
    """Recent and running jobs: MLflow run, state, dataset version, counts."""
    from datetime import datetime

    from flows.tracking import EXPERIMENT, Tracker

    paths = _paths()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    t = Table(title=f"recent jobs ({EXPERIMENT} experiment, {paths.tracking_uri})")
    for col in ("started", "job", "state", "dataset", "generated", "kept", "seconds", "MLflow run", "Prefect flow run"):
        t.add_column(col, overflow="fold")
    for r in runs:
        m, tags = r.data.metrics, r.data.tags
        started = datetime.fromtimestamp(r.info.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S")
        t.add_row(started, r.info.run_name or "-", r.info.status, tags.get("synthgen.dataset", "-"),
                  f"{m.get('generated', 0):.0f}", f"{m.get('kept', 0):.0f}", f"{m.get('wall_s', 0):.1f}",
                  r.info.run_id, tags.get("prefect.flow_run_id", "-"))
    out.print(t)


@app.command("schedule")
def schedule_cmd(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    cron: Optional[str] = typer.Option(None, help="Cron schedule, e.g. '0 2 * * *' (none: run on demand)."),
    pool: str = typer.Option("synthgen", help="Prefect work pool (created as a process pool if missing)."),
    name: Optional[str] = typer.Option(None, help="Deployment name (default: the job's name)."),
) -> None:
    """Register a job as a Prefect deployment with a cron schedule (needs `prefect server start`)."""
    from flows.schedule import ScheduleError, schedule
    from synthgen.spec import SpecError, load_spec

    try:
        job = load_spec(spec)
        dep = schedule(job, str(_paths().root), cron, pool, name)
    except (SpecError, ScheduleError) as exc:
        _fail(str(exc))
    out.print(f"scheduled {name or job.name} (deployment {dep}) on pool {pool!r}" + (f", cron {cron!r}" if cron else ""))
    out.print(f"start a worker where it should run:  prefect worker start --pool {pool}")


@app.command()
def schedules() -> None:
    """List scheduled jobs with their next run times."""
    from flows.schedule import ScheduleError, list_schedules

    try:
        items = list_schedules()
    except ScheduleError as exc:
        _fail(str(exc))
    t = Table(title="synthgen schedules")
    for col in ("name", "cron", "pool", "dataset", "next runs", "deployment"):
        t.add_column(col, overflow="fold")
    for s in items:
        t.add_row(s.name, s.cron or "-", s.pool or "-", s.dataset or "-", "\n".join(s.next_runs) or "-", s.deployment_id)
    out.print(t)


@app.command()
def unschedule(name: str = typer.Argument(..., help="Deployment name.")) -> None:
    """Remove a scheduled job."""
    from flows.schedule import ScheduleError, unschedule as run_unschedule

    try:
        run_unschedule(name)
    except ScheduleError as exc:
        _fail(str(exc))
    out.print(f"removed schedule {name}")


def entrypoint() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; committed versions are intact, rerun the job to resume")
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
