"""``synthgen export``: a version as Parquet, a Hugging Face dataset folder or PNG / JPEG files, optionally signed (C2PA)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.common import SHARE, open_catalog, fail, cli_paths, app, check_status
from flows.cli.output import say
from flows.cli.paths import output_file, output_folder


@app.command(rich_help_panel=SHARE)
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    dest: str = typer.Argument(
        ...,
        help="A new .parquet file, or a folder (PNG or JPEG files, or a dataset with --format hf)."),
    status: str = typer.Option("kept", help="Row status to export ('all' for every row)."),
    allow_restricted: bool = typer.Option(False, help="Required to export a restricted dataset."),
    format: str = typer.Option(
        "auto", help="auto (.parquet: one file, else PNGs), jpeg (JPEG files, lossy, no text chunks), "
                     "hf (sharded Parquet + README.md for datasets.load_dataset)."
    ),
    quality: Optional[int] = typer.Option(None, help="JPEG quality, 1-95 (default 90); --format jpeg only."),
    credentials: bool = typer.Option(
        False, help="Sign each synthetic image with C2PA content credentials ($SYNTHGEN_SIGN_CERT/_KEY/_CALLBACK; "
                    "none: a local, untrusted identity). Every format; real rows are never signed."),
) -> None:
    """Export a version as one Parquet file, a sharded Hugging Face dataset folder, or PNG / JPEG files."""
    from catalog import open_version
    from flows.outputs.export import export_hf, export_images, export_parquet

    check_status(status)
    if format not in ("auto", "jpeg", "hf"):
        fail(f"--format must be auto, jpeg or hf, not {format!r}")
    encoding = _encoding(format, quality)
    to_file = format == "auto" and Path(dest).suffix == ".parquet"
    if format == "jpeg" and Path(dest).suffix == ".parquet":
        fail(f"{dest}: --format jpeg writes image files into a folder, not a .parquet file")
    # Nothing existing is ever replaced or mixed into, whatever the format: an existing file may be someone's
    # data, a folder holding files an earlier export (there is no --overwrite).
    target = (output_file(dest, "export destination", replace=False) if to_file else
              output_folder(dest, "export destination", "give a folder for image files or a Hugging Face dataset, "
                                                            "or a new .parquet file", empty=True))
    identity = _identity() if credentials else None
    v = open_version(open_catalog(), ref, allow_restricted)  # a restricted dataset raises unless allowed (catalog.access)
    if format == "hf":
        n = export_hf(v, target, status, identity=identity)
    elif to_file:
        n = export_parquet(v, target, status, identity=identity)
    else:
        n = export_images(v, target, status, identity=identity, encoding=encoding)
    say(f"exported {n} rows of {v.ref} to {target}" + (f" as JPEG q{encoding.quality}" if format == "jpeg" else ""))
    if identity is not None:
        say(f"synthetic images signed by {identity.name} ({identity.source}); real rows carry no claim")
        _record_credentials(v, identity, target)


def _encoding(format: str, quality: int | None):
    """The image files' encoding; a quality without --format jpeg, or out of range, is an error."""
    from pydantic import ValidationError

    from flows.outputs.export import ImageEncoding

    if quality is not None and format != "jpeg":
        fail("--quality applies to --format jpeg only (PNG and Parquet keep the catalog's lossless PNG bytes)")
    try:
        return ImageEncoding(format="jpeg", quality=quality) if format == "jpeg" else ImageEncoding()
    except ValidationError:
        fail(f"--quality must be between 1 and 95, not {quality}")


def _record_credentials(version, identity, dest: Path) -> None:
    """Tag the MLflow runs that made the version with the export's signing identity."""
    from flows.tracking import Tracker

    paths = cli_paths()
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    for run in version.manifest.runs:
        if run.mlflow_run_id:
            tracker.tag_run(run.mlflow_run_id, {"synthgen.credentials": f"{identity.name} ({identity.source})",
                                                "synthgen.credentials.last_export": str(dest)})


def _identity():
    """The signing identity from the settings, else the data folder's local one."""
    from flows.outputs.credentials import CredentialsError, signing_identity
    from flows.settings import Settings

    s = Settings()
    try:
        return signing_identity(cli_paths().root, s.sign_cert, s.sign_key, s.sign_callback)
    except CredentialsError as exc:
        fail(str(exc))
