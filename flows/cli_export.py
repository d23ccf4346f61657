"""``synthgen export``: a version as Parquet, a Hugging Face dataset folder or PNGs, optionally signed (C2PA)."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli_common import SHARE, _catalog, _fail, _paths, app, check_status, out


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
