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
from rich.markup import escape
from rich.table import Table

from flows.cli_common import (
    AUDIT, GENERATE, INSPECT, JSON_HELP, SHARE, _catalog, _fail, _paths, app, check_status, err, out,
    print_json,
)

REPO = Path(__file__).resolve().parent.parent
DEMO_PACKAGED = Path(__file__).resolve().parent / "demo"  # package data: the demo runs from an installed wheel
DEMO_REAL = "digits-real"


SET_HELP = "Override a spec field: --set generator.steps=10 (repeatable; the value is YAML)."
PARAMS_HELP = "Merge a section of a params file over the spec, e.g. params.yaml:demo (DVC's params)."
CHECK_HELP = "Only validate: the spec, the models' configs and the catalog references; run nothing, write nothing."


def demo_files() -> tuple[Path, Path]:
    """The demo's job spec and params file.

    In a source checkout these are ``jobs/digits-demo.yaml`` and the root
    ``params.yaml``, the files DVC tracks (``dvc exp run -S demo...`` edits
    the latter). An installed package has no checkout: it uses the copies
    shipped in ``flows/demo/``, which a test keeps equal to those two.
    """
    job, params = REPO / "jobs" / "digits-demo.yaml", REPO / "params.yaml"
    if (REPO / "dvc.yaml").is_file() and job.is_file() and params.is_file():
        return job, params
    return DEMO_PACKAGED / "digits-demo.yaml", DEMO_PACKAGED / "params.yaml"


def _load_job(spec_path: Path, params: str | None, assignments: list[str] | None):
    """The validated job spec (with params and --set merged), or a clear error naming the field."""
    from synthgen.spec import load_params, load_spec, merge_overrides, parse_assignments

    overrides = merge_overrides(load_params(params) if params else {}, parse_assignments(assignments or []))
    return load_spec(spec_path, overrides)


def _check_job(spec, skip_real: str | None = None) -> None:
    """Everything checkable before services start: the models' configs, then the catalog references."""
    from catalog import Catalog
    from flows.generate import preflight
    from synthgen.model_check import check_job_models

    check_job_models(spec)  # config files only: no weights, no Prefect, no MLflow
    cat = Catalog(_paths().catalog)
    if skip_real and spec.dedup.real_dataset == skip_real and not cat.exists(skip_real):
        spec = spec.model_copy(update={"dedup": spec.dedup.model_copy(update={"real_dataset": None})})
    preflight(spec, cat)


def _run_job(spec_path: Path, params: str | None = None, assignments: list[str] | None = None) -> dict:
    spec = _load_job(spec_path, params, assignments)  # validated before anything loads or is written
    _check_job(spec)
    paths = _paths()
    from flows.generate import ShardFailed, generate_dataset
    from flows.schedule import ScheduleError
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


def _print_checked(spec) -> None:
    out.print(f"{spec.name}: valid ({spec.total_images} images -> {spec.output.dataset}; "
              f"generator {spec.generator.model}, embedder {spec.embedder.model}; job digest {spec.digest()[:12]})")


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
        t.add_row("dropped: low quality (CLIP alignment or degenerate image)", f"{c['low_quality']}")
    t.add_row("throughput", f"{m['images_per_s']:.1f} images/s over {m['wall_s']:.1f} s (start-up {m['startup_s']:.1f} s)")
    t.add_row("dataset", f"{r['dataset']} version {r['version']}")
    folder = str(Path(r["files"][0]).parent) if r["files"] else "-"
    t.add_row("parquet", f"{len(r['files'])} new shard(s) in {folder}" if r["files"] else "(no new shards)")
    t.add_row("manifest", r["manifest"])
    t.add_row("sample grid", r["grid"])
    t.add_row("MLflow run", f"{r['mlflow_run_id']} ({r['mlflow_tracking_uri']})")
    t.add_row("Prefect flow run", f"{r['prefect_flow_run_name']} ({r['prefect_flow_run_id']})")
    out.print(t)


@app.command(rich_help_panel=GENERATE)
def run(
    spec: Path = typer.Argument(..., help="Job spec YAML."),
    params: str = typer.Option(None, "--params", help=PARAMS_HELP),
    assignments: list[str] = typer.Option(None, "--set", help=SET_HELP),
    json_out: Path = typer.Option(None, "--json", help="Also write the run's result (version, counts, metrics) as JSON."),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
) -> None:
    """Run a job spec: generate, deduplicate, commit a version, log to MLflow."""
    if check:
        job = _load_job(spec, params, assignments)
        _check_job(job)
        _print_checked(job)
        return
    if json_out is not None and (json_out.is_dir() or not json_out.parent.is_dir()):
        _fail(f"--json {json_out}: not a file in an existing folder")
    result = _run_job(spec, params, assignments)
    if json_out:
        import json

        json_out.write_text(json.dumps(result, indent=2, default=str))
    _print_summary(result)


@app.command(rich_help_panel=GENERATE)
def ingest(
    folder: Path = typer.Argument(..., help="Folder with one sub-folder per class."),
    name: str = typer.Option(..., "--name", "-n", help="Real dataset name."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for the memorisation guard."),
    restricted: bool = typer.Option(False, help="Mark the dataset restricted (no export without a flag)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave out files that are not readable images (counted)."),
) -> None:
    """Ingest an image folder as a real dataset (class = sub-folder name); every file is decoded before anything is written."""
    from catalog import ingest_folder
    from catalog.ingest import check_target, scan
    from synthgen.embedder import load_embedder
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    cat = _catalog()
    check_target(cat, name)  # a bad or taken name, before any file is read
    scan(folder)  # clear error before any model loads
    emb_spec = EmbedderSpec(model=embedder)
    check_embedder(emb_spec, "--embedder")
    emb = load_embedder(emb_spec)
    m = ingest_folder(cat, name, folder, emb.embed_images, emb.name, restricted=restricted, skip_bad=skip_bad)
    skipped = m.prov.get("skipped", [])
    out.print(f"ingested {m.rows} real images into [bold]{name}@{m.version}[/] ({emb.name})"
              + (f"; skipped {len(skipped)} unreadable file(s)" if skip_bad else ""))
    for item in skipped:
        err.print(f"  skipped {escape(item['file'])}: {escape(item['reason'])}")


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


@app.command(rich_help_panel=GENERATE)
def demo(
    assignments: list[str] = typer.Option(None, "--set", help=SET_HELP),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
) -> None:
    """Ingest the bundled real digits (once) and run the demo job (jobs/digits-demo.yaml + params.yaml's `demo`)."""
    import tempfile

    from synthgen.digits import CLASS_NAMES, export_image_folder

    job, params = demo_files()
    spec = _load_job(job, f"{params}:demo", assignments)
    _check_job(spec, skip_real=DEMO_REAL)  # the demo ingests its real digits below
    if check:
        _print_checked(spec)
        return
    cat = _catalog()
    if not cat.exists(DEMO_REAL) or cat.head(DEMO_REAL) is None:
        server = _start_temporary_prefect_server()  # ~10 s, on the other core while the ingest runs
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_image_folder(Path(tmp) / "digits")
            (folder / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
            ingest(folder, DEMO_REAL, "embedded:digits-clip", False, False)
        server.join()
    _print_summary(_run_job(job, f"{params}:demo", assignments))


@app.command(rich_help_panel=INSPECT)
def datasets(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List datasets with origin, head version and row counts."""
    cat = _catalog()
    rows = []
    for name in cat.names():
        info, head = cat.info(name), cat.head(name)
        m = cat.manifest(name, head) if head else None
        rows.append({"name": name, "origin": info["origin"], "head": head, "rows": m.rows if m else 0,
                     "kept": m.rows_by_status.get("kept", 0) if m else 0, "restricted": bool(info.get("restricted"))})
    if as_json:
        return print_json({"catalog": str(cat.root), "datasets": rows})
    t = Table(title=f"datasets in {cat.root}")
    for col in ("name", "origin", "head", "rows", "kept", "restricted"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["origin"], str(r["head"] or "-"), str(r["rows"]), str(r["kept"]),
                  "yes" if r["restricted"] else "")
    out.print(t)


@app.command(rich_help_panel=INSPECT)
def versions(
    name: str = typer.Argument(..., help="Dataset name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List a dataset's versions: time, parent, rows by status, job digest, runs."""
    cat = _catalog()
    ms = cat.versions(name)
    if as_json:
        return print_json({"dataset": name, "origin": cat.info(name)["origin"], "versions": [
            {"version": m.version, "created_at": m.created_at, "parent": m.parent, "rows": m.rows,
             "rows_by_status": m.rows_by_status, "job_digest": m.job_digest, "message": m.message,
             "runs": [r.model_dump(mode="json") for r in m.runs]} for m in ms]})
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


@app.command(rich_help_panel=INSPECT)
def load(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    status: str = typer.Option("kept", help="Row status ('all' for every row)."),
    limit: int = typer.Option(5, min=0, help="Rows to show."),
    allow_restricted: bool = typer.Option(False, help="Required to read a restricted dataset."),
) -> None:
    """Open a version the way training code does and show a few rows."""
    from catalog import open_version

    check_status(status)
    cols = ["sample_id", "origin", "status", "label", "label_name", "prompt", "seed", "nn_similarity"]
    v = open_version(_catalog(), ref, allow_restricted)
    table = v.table(cols, status)
    out.print(f"{v.ref}: {table.num_rows} rows ({status}); files:\n  " + "\n  ".join(v.files))
    out.print(table.slice(0, limit).to_pandas().to_string(index=False))


@app.command(rich_help_panel=AUDIT)
def audit(
    target: str = typer.Argument(..., help="A sample id, or an image file to trace back."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for tracing edited files."),
    allow_restricted: bool = typer.Option(False, help="Required to show a row of a restricted dataset."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a sample's whole lineage: provenance, versions, runs. Accepts an image file too."""
    from catalog import audit as run_audit

    sample_id = target
    if Path(target).is_file():
        sample_id = _trace(Path(target), embedder, quiet=as_json)
    records = run_audit(_catalog(), sample_id, allow_restricted)
    if not records:
        _fail(f"no sample {sample_id!r} in any committed version (give a sample id or an image file)", code=1)
    if as_json:
        return print_json({"sample_id": sample_id, "records": [
            {"dataset": rec.dataset, "versions": rec.versions, "shard": rec.shard,
             "row": {k: v for k, v in rec.row.items() if k not in ("image", "embedding")}} for rec in records]})
    for rec in records:
        t = Table(title=f"sample {sample_id} in {rec.dataset} (versions {', '.join(map(str, rec.versions))})")
        t.add_column("field")
        t.add_column("value", overflow="fold")
        for k, v in rec.row.items():
            if v is not None:
                t.add_row(k, escape(str(v)))
        t.add_row("shard", rec.shard)
        out.print(t)


def _trace(path: Path, embedder: str, quiet: bool = False) -> str:
    """Find the sample an image file came from; print how it was matched (to stderr when ``quiet``)."""
    from catalog.trace import by_embedding, by_pixel_hash
    from synthgen.embedder import load_embedder
    from synthgen.imaging import ImageReadError, pixel_sha256, png_text, read_image_file
    from synthgen.model_check import check_embedder
    from synthgen.spec import EmbedderSpec

    try:
        _, img = read_image_file(path)
    except ImageReadError as exc:
        raise ImageReadError(f"{exc}; audit takes a sample id or an image file") from None
    say = (err if quiet else out).print  # --json keeps stdout for the JSON document
    cat = _catalog()
    sha = pixel_sha256(img)
    found = _credentials(path, sha, cat, say)
    if found:
        return found
    from catalog.trace import by_watermark
    from synthgen.watermark import BITS

    mark = by_watermark(cat, img)
    if mark is not None:
        say(f"{path}: watermark payload -> {mark.sample_id} in {mark.dataset} "
            f"({round((1 - mark.similarity) * BITS)} of {BITS} bits off; confidence {mark.confidence})")
        return mark.sample_id
    meta = png_text(img)
    exact = by_pixel_hash(cat, sha)
    if meta.get("sample_id") and (not exact or exact[0].sample_id == meta["sample_id"]):
        verified = "pixels match the catalog" if exact else "pixels do NOT match the catalog row"
        say(f"{path}: provenance chunk names sample {meta['sample_id']} ({verified})")
        return meta["sample_id"]
    if exact:
        say(f"{path}: exact pixel match (sha256) -> {exact[0].sample_id} in {exact[0].dataset}")
        return exact[0].sample_id
    emb_spec = EmbedderSpec(model=embedder)
    check_embedder(emb_spec, "--embedder")
    emb = load_embedder(emb_spec)
    match = by_embedding(cat, emb.embed_images([img])[0], emb.name, image=img)
    if match is None:
        _fail(f"{path}: no exact match and no dataset embedded with {emb.name}", code=1)
    margin = f", {match.margin:.3f} closer than the runner-up" if match.margin is not None else ""
    say(f"{path}: no exact match; closest by CLIP then pixels is {match.sample_id} in {match.dataset} "
              f"(cosine {match.similarity:.4f}; pixel distance {match.pixel_distance:.3f}{margin}; "
              f"confidence {match.confidence})")
    if match.same_pixels:
        say(f"  rows with the same pixels: {', '.join(match.same_pixels)}")
    return match.sample_id


def _credentials(path: Path, sha: str, cat, say) -> str | None:
    """Read and validate the file's C2PA manifest; the sample it names when valid and consistent with the catalog."""
    from catalog import audit as run_audit
    from flows.credentials import MIME, read_credentials

    cred = read_credentials(path.read_bytes(), MIME.get(path.suffix.lower(), "image/png"))
    if cred is None:
        say(f"{path}: no content credentials; tracing by watermark, metadata, pixels, CLIP")
        return None
    trust = "trusted" if cred.trusted else "untrusted signer"
    if not cred.valid:
        say(f"{path}: content credentials FAILED validation ({', '.join(cred.failures) or cred.state}); "
            f"signed by {cred.signer}; the file was altered after signing; tracing by pixels instead")
        return None
    sid = cred.claim.get("sample_id")
    say(f"{path}: content credentials valid ({trust}: {cred.signer}); "
        f"{'synthetic (trainedAlgorithmicMedia)' if cred.synthetic else 'no synthetic claim'}; "
        f"claims sample {sid} of {cred.claim.get('dataset')}")
    records = run_audit(cat, sid, True) if sid else []
    rows = [r.row for r in records]
    mismatch = [] if rows else [f"no sample {sid!r} in the catalog"]
    if rows and rows[0].get("image_sha256") != cred.claim.get("image_sha256"):
        mismatch.append("image_sha256 in the manifest differs from the catalog row")
    if cred.claim.get("image_sha256") != sha:
        mismatch.append("the file's pixels differ from the manifest's image_sha256")
    say("  matches the catalog row (sample and pixel hash)" if not mismatch else "  MISMATCH: " + "; ".join(mismatch))
    return sid if rows else None


@app.command(rich_help_panel=SHARE)
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    dest: Path = typer.Argument(..., help="A .parquet file, or a folder (PNG files, or a dataset with --format hf)."),
    status: str = typer.Option("kept", help="Row status to export ('all' for every row)."),
    allow_restricted: bool = typer.Option(False, help="Required to export a restricted dataset."),
    format: str = typer.Option(
        "auto", help="auto (.parquet: one file, else PNGs), hf (sharded Parquet + README.md for datasets.load_dataset)."
    ),
    credentials: bool = typer.Option(
        False, help="Sign each synthetic image with C2PA content credentials ($SYNTHGEN_SIGN_CERT/_KEY/_CALLBACK; "
                    "none: a local, untrusted identity). PNGs and --format hf."),
) -> None:
    """Export a version as one Parquet file, a sharded Hugging Face dataset folder, or PNGs with provenance."""
    from catalog import open_version
    from flows.export import export_hf, export_parquet, export_pngs

    check_status(status)
    if format not in ("auto", "hf"):
        _fail(f"--format must be auto or hf, not {format!r}")
    to_file = format == "auto" and dest.suffix == ".parquet"
    if (to_file and not dest.parent.is_dir()) or (not to_file and dest.is_file()):
        _fail(f"{dest}: " + (f"folder {dest.parent} does not exist" if to_file else "is a file; give a folder for PNGs "
                             "or a Hugging Face dataset, or a .parquet file"))
    if credentials and to_file:
        _fail("--credentials signs image files: export to a folder (PNGs) or with --format hf")
    identity = _identity() if credentials else None
    v = open_version(_catalog(), ref, allow_restricted)  # a restricted dataset raises unless allowed (catalog.access)
    if format == "hf":
        n = export_hf(v, dest, status, identity=identity)
    else:
        n = export_parquet(v, dest, status) if to_file else export_pngs(v, dest, status, identity=identity)
    out.print(f"exported {n} rows of {v.ref} to {dest}")
    if identity is not None:
        out.print(f"synthetic images signed by {identity.name} ({identity.source}); real rows carry no claim")
        _record_credentials(v, identity, dest)


def _record_credentials(version, identity, dest: Path) -> None:
    """Tag the MLflow runs that made the version with the export's signing identity."""
    from flows.tracking import Tracker

    paths = _paths()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    for run in version.manifest.runs:
        if run.mlflow_run_id:
            tracker.tag_run(run.mlflow_run_id, {"synthgen.credentials": f"{identity.name} ({identity.source})",
                                                "synthgen.credentials.last_export": str(dest)})


def _identity():
    """The signing identity from the settings, else the data folder's local one."""
    from flows.credentials import CredentialsError, signing_identity
    from flows.settings import Settings

    s = Settings()
    try:
        return signing_identity(_paths().root, s.sign_cert, s.sign_key, s.sign_callback)
    except CredentialsError as exc:
        _fail(str(exc))


# The other command modules register on `app` after this one's commands, so `--help` lists the
# panels in the order a user meets them (generate, inspect, audit, share, schedule).
from flows import cli_catalog, cli_quality, cli_remote, cli_schedule  # noqa: E402,F401


def entrypoint() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; committed versions are intact, rerun the job to resume")
        sys.exit(130)


if __name__ == "__main__":
    entrypoint()
