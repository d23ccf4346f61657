"""Exporting a version: one Parquet file, a sharded Hugging Face folder, or PNGs carrying their provenance."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import DatasetVersion
from catalog.store import write_parquet_atomic
from synthgen.imaging import decode, encode_png

if TYPE_CHECKING:
    from flows.credentials import Identity

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


def export_pngs(version: DatasetVersion, dest: Path, status: str = "kept", identity: Identity | None = None) -> int:
    """Write ``<dest>/<label or 'image'>/<sample_id>.png`` with provenance chunks.

    With ``identity``, each synthetic image also carries a signed C2PA
    manifest (``flows.credentials``); real rows are written unsigned, so
    they never carry a synthetic claim. Each file is written under a temp
    name and renamed.
    """
    dest = Path(dest)
    table = version.table(status=status)
    rows = table.select([c for c in PNG_FIELDS if c in table.column_names]).to_pylist()
    images = table["image"].combine_chunks().field("bytes").to_pylist()
    sign = _signer_for(version, identity)
    for row, data in zip(rows, images):
        text = {k: v for k, v in row.items() if v is not None}
        text["dataset"] = version.ref
        folder = dest / (row.get("label_name") or "image")
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{row['sample_id']}.png"
        final.with_suffix(".tmp").write_bytes(sign(row, encode_png(decode(data), text)))
        os.replace(final.with_suffix(".tmp"), final)
    return len(rows)


def _signer_for(version: DatasetVersion, identity: Identity | None):
    """``sign(row, png_bytes) -> bytes``: adds credentials to synthetic rows only (identity for none)."""
    if identity is None:
        return lambda row, data: data
    from flows.credentials import manifest_definition, sign_bytes

    dataset = {"dataset": version.ref, "manifest_sha256": version.catalog.manifest_sha256(version.name, version.version)}

    def sign(row: dict, data: bytes) -> bytes:
        if row.get("origin") != "synthetic":  # a real image must never be claimed as generated
            return data
        return sign_bytes(data, "image/png", manifest_definition(row, dataset), identity)

    return sign


def _sign_images(t: pa.Table, sign) -> pa.Table:
    """``t`` with each synthetic row's image bytes replaced by their signed form (HF export)."""
    rows = t.select([c for c in PNG_FIELDS if c in t.column_names]).to_pylist()
    col = t["image"].combine_chunks()
    signed = [sign(row, data) for row, data in zip(rows, col.field("bytes").to_pylist())]
    image = pa.StructArray.from_arrays([pa.array(signed, pa.binary()), col.field("path")], fields=list(col.type))
    return t.set_column(t.column_names.index("image"), "image", image)




ROWS_PER_SHARD = 10_000  # ~ the few hundred MB per file the HF datasets docs suggest, at 256-512 px PNGs

_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
---
# {ref}

Rows of `{ref}` with status `{status}`, exported by synthgen in {shards} Parquet shard(s).
Features (image, label as a ClassLabel, provenance) are in each file's `huggingface` schema metadata;
the `origin` column tells synthetic rows from real ones.

```python
import datasets
ds = datasets.load_dataset("path/to/this/folder", split="train")
synthetic = ds.filter(lambda r: r["origin"] == "synthetic")
```
"""


def export_hf(version: DatasetVersion, dest: Path, status: str = "kept", rows_per_shard: int = ROWS_PER_SHARD,
              identity: Identity | None = None) -> int:
    """Write ``dest/data/train-XXXXX-of-NNNNN.parquet`` plus a ``README.md`` that ``datasets.load_dataset(dest)`` reads.

    Rows are streamed a row group at a time (memory flat in the version's
    size) and each shard is written under a temp name and renamed; the
    README, written last, is what makes the folder a dataset. With
    ``identity``, synthetic rows' images carry signed C2PA manifests.
    """
    dest = Path(dest)
    files = version.files_for(status)  # raises for a restricted version opened without the flag
    counts = version.manifest.rows_by_status
    total = sum(counts.values()) if status == "all" else counts.get(status, 0)
    shards = max(1, math.ceil(total / rows_per_shard))
    (dest / "data").mkdir(parents=True, exist_ok=True)
    writer, written, shard = None, 0, 0
    schema = pq.read_schema(files[0]) if files else None
    sign = _signer_for(version, identity)

    def close() -> None:
        nonlocal writer, shard
        if writer is not None:
            writer.close()
            final = dest / "data" / f"train-{shard:05d}-of-{shards:05d}.parquet"
            os.replace(final.with_suffix(".tmp"), final)
            writer, shard = None, shard + 1

    for path in files:
        pf = pq.ParquetFile(path)
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g)
            if status != "all":
                t = t.filter(pc.equal(t["status"], status))
            if identity is not None and t.num_rows:
                t = _sign_images(t, sign)
            while t.num_rows:
                if writer is None:
                    tmp = dest / "data" / f"train-{shard:05d}-of-{shards:05d}.tmp"
                    writer, in_shard = pq.ParquetWriter(tmp, schema), 0
                take = min(t.num_rows, rows_per_shard - in_shard)
                writer.write_table(t.slice(0, take).cast(schema))
                t, in_shard, written = t.slice(take), in_shard + take, written + take
                if in_shard == rows_per_shard:
                    close()
    close()
    if written == 0 and schema is not None:  # an empty version is still a loadable (empty) dataset
        pq.write_table(pa.Table.from_batches([], schema), dest / "data" / f"train-00000-of-{shards:05d}.parquet")
    readme = _README.format(ref=version.ref, status=status, shards=shards)
    if identity is not None:
        readme += (f"\nSynthetic images carry signed C2PA content credentials (`c2pa.created`, trainedAlgorithmicMedia, "
                   f"and an `org.synthgen.provenance` assertion), signed by `{identity.name}` ({identity.source}). "
                   "Real rows carry none.\n")
    else:
        readme += "\nNo content credentials were attached (`synthgen export --credentials` adds them).\n"
    (dest / "README.md").write_text(readme)
    return written
