"""Exporting a version: one Parquet file, or PNGs carrying their provenance."""

from __future__ import annotations

from pathlib import Path


from catalog import DatasetVersion
from catalog.store import write_parquet_atomic
from synthgen.imaging import decode, encode_png

# Provenance written into each exported PNG (tEXt chunks, prefix 'synthgen:').
PNG_FIELDS = (
    "sample_id", "origin", "label_name", "prompt", "model_id", "model_weights_sha256", "seed",
    "scheduler", "num_inference_steps", "guidance_scale", "image_sha256", "job_digest",
    "prefect_flow_run_id", "mlflow_run_id", "code_commit",
)


def export_parquet(version: DatasetVersion, dest: Path, status: str = "kept") -> int:
    """Write the version's rows (with the HF schema) to one Parquet file."""
    table = version.table(status=status)
    write_parquet_atomic(table, Path(dest))
    return table.num_rows


def export_pngs(version: DatasetVersion, dest: Path, status: str = "kept") -> int:
    """Write ``<dest>/<label or 'image'>/<sample_id>.png`` with provenance chunks."""
    dest = Path(dest)
    table = version.table(status=status)
    rows = table.select([c for c in PNG_FIELDS if c in table.column_names]).to_pylist()
    images = table["image"].combine_chunks().field("bytes").to_pylist()
    for row, data in zip(rows, images):
        text = {k: v for k, v in row.items() if v is not None}
        text["dataset"] = version.ref
        folder = dest / (row.get("label_name") or "image")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{row['sample_id']}.png").write_bytes(encode_png(decode(data), text))
    return len(rows)


