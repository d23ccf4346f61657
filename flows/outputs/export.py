"""Exporting a version: one Parquet file, a sharded Hugging Face folder, or PNG / JPEG files carrying their provenance."""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from catalog import DatasetVersion
from catalog.safe_paths import confined
from catalog.store import write_parquet_atomic
from synthgen.imaging import decode, encode_png

if TYPE_CHECKING:
    from flows.outputs.credentials import Identity

# Provenance written into each exported PNG (tEXt chunks, prefix 'synthgen:').
PNG_FIELDS = (
    "sample_id", "origin", "label_name", "prompt", "model_id", "model_weights_sha256", "seed",
    "scheduler", "num_inference_steps", "guidance_scale", "image_sha256", "job_digest",
    "prefect_flow_run_id", "mlflow_run_id", "code_commit",
)
DEFAULT_JPEG_QUALITY = 90
CREDENTIALS_KEY = b"synthgen.credentials"  # Parquet schema metadata: who signed the synthetic images


class ImageEncoding(BaseModel):
    """How exported image files are encoded: PNG (lossless, provenance in text chunks) or JPEG at a quality."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["png", "jpeg"] = "png"
    quality: int | None = Field(None, ge=1, le=95)  # Pillow: above 95 buys size, not quality

    @model_validator(mode="before")
    @classmethod
    def _default_quality(cls, data):
        if isinstance(data, dict) and data.get("format") == "jpeg" and data.get("quality") is None:
            return {**data, "quality": DEFAULT_JPEG_QUALITY}
        return data

    @model_validator(mode="after")
    def _quality_is_for_jpeg(self) -> ImageEncoding:
        if self.format == "png" and self.quality is not None:
            raise ValueError("quality applies to JPEG only (PNG is lossless)")
        return self

    @property
    def suffix(self) -> str:
        return ".png" if self.format == "png" else ".jpg"

    @property
    def mime(self) -> str:
        return f"image/{self.format}"

    def claim(self) -> dict:
        """What the synthgen assertion says about the file's encoding (audit: a JPEG is a lossy derivative)."""
        return {"encoding": self.format} | ({"quality": self.quality} if self.format == "jpeg" else {})


PNG = ImageEncoding()


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    """Baseline JPEG bytes (no metadata); the same pixels, quality and Pillow build give the same bytes.

    Audit relies on that to re-encode the catalog row and compare. JPEG has no
    alpha and no palette: other modes are converted to RGB (alpha dropped).
    """
    buf = io.BytesIO()
    (img if img.mode in ("L", "RGB") else img.convert("RGB")).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def export_parquet(version: DatasetVersion, dest: Path, status: str = "kept", identity: Identity | None = None) -> int:
    """Write the version's rows (with the HF schema) to one Parquet file.

    With ``identity``, synthetic rows' image bytes carry signed C2PA
    manifests (as in the HF export); real rows are left as they are.
    """
    table = version.table(status=status)
    if identity is not None:
        table = _sign_images(table, _signer_for(version, identity)) if table.num_rows else table
        # the file says who signed it, as the HF export's README does
        meta = {**(table.schema.metadata or {}), CREDENTIALS_KEY: json.dumps(identity.describe())}
        table = table.replace_schema_metadata(meta)
    write_parquet_atomic(table, Path(dest))
    return table.num_rows


def export_images(version: DatasetVersion, dest: Path, status: str = "kept", identity: Identity | None = None,
                  encoding: ImageEncoding = PNG) -> int:
    """Write ``<dest>/<label or 'image'>/<sample_id>.png`` (or ``.jpg``), PNGs with provenance chunks.

    A JPEG carries no text chunks: without credentials it is traced by
    watermark, pixels or CLIP, like any copy. With ``identity``, each
    synthetic image carries a signed C2PA manifest (``flows.outputs.credentials``)
    whose assertion names its row and its encoding; real rows are written
    unsigned, so they never carry a synthetic claim. Each file is written
    under a temp name and renamed.
    """
    dest = Path(dest)
    table = version.table(status=status)
    rows = table.select([c for c in PNG_FIELDS if c in table.column_names]).to_pylist()
    images = table["image"].combine_chunks().field("bytes").to_pylist()
    sign = _signer_for(version, identity, encoding)
    # Every name comes from a row (a pulled catalog's rows are someone else's): all are checked before the
    # first file is written, so a hostile row fails the export with nothing written.
    targets = [confined(dest, row.get("label_name") or "image", f"{row['sample_id']}{encoding.suffix}")
               for row in rows]
    for row, data, final in zip(rows, images, targets):
        final.parent.mkdir(parents=True, exist_ok=True)
        if encoding.format == "jpeg":
            encoded = encode_jpeg(decode(data), encoding.quality)
        else:
            text = {k: v for k, v in row.items() if v is not None} | {"dataset": version.ref}
            encoded = encode_png(decode(data), text)
        tmp = final.with_name(f".{final.name}.tmp")
        _write_new(tmp, sign(row, encoded))
        os.replace(tmp, final)  # replaces a link standing at `final`, never writes through it
    return len(rows)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that must not exist yet: a file or link planted at ``path`` is an error, not a target."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def export_pngs(version: DatasetVersion, dest: Path, status: str = "kept", identity: Identity | None = None) -> int:
    """``export_images`` as PNGs (lossless, provenance in text chunks)."""
    return export_images(version, dest, status, identity, PNG)


def _signer_for(version: DatasetVersion, identity: Identity | None, encoding: ImageEncoding = PNG):
    """``sign(row, encoded) -> bytes``: adds credentials to synthetic rows only (identity for none)."""
    if identity is None:
        return lambda row, data: data
    from flows.outputs.credentials import manifest_definition, sign_bytes

    dataset = {"dataset": version.ref, "manifest_sha256": version.catalog.manifest_sha256(version.name, version.version)}

    def sign(row: dict, data: bytes) -> bytes:
        if row.get("origin") != "synthetic":  # a real image must never be claimed as generated
            return data
        return sign_bytes(data, encoding.mime, manifest_definition(row, dataset, encoding=encoding.claim()), identity)

    return sign


def _sign_images(t: pa.Table, sign) -> pa.Table:
    """``t`` with each synthetic row's image bytes replaced by their signed form (HF and Parquet export)."""
    rows = t.select([c for c in PNG_FIELDS if c in t.column_names]).to_pylist()
    col = t["image"].combine_chunks()
    signed = [sign(row, data) for row, data in zip(rows, col.field("bytes").to_pylist())]
    image = pa.StructArray.from_arrays([pa.array(signed, pa.binary()), col.field("path")], fields=list(col.type))
    return t.set_column(t.column_names.index("image"), "image", image)


ROWS_PER_SHARD = 10_000  # ~ the few hundred MB per file the HF datasets docs suggest, at 256-512 px PNGs

# No `configs:` block in the card: `datasets` then keys its cache on the folder's name and the config
# name alone, so loading a re-export (or any folder with the same name) returned the rows cached the
# first time. Without it the files are found by their `data/train-*` names (split "train") and the
# cache key covers each file's path and modification time.
_README = """---
pretty_name: "{ref}"
tags:
- synthgen
---
# {ref}

Rows of `{ref}` with status `{status}`, exported by synthgen in {shards} Parquet shard(s).
Features (image, label as a ClassLabel named from `label_name`, provenance) are in each file's `huggingface` schema metadata;
the `origin` column tells synthetic rows from real ones.

```python
import datasets
ds = datasets.load_dataset("path/to/this/folder", split="train")
synthetic = ds.filter(lambda r: r["origin"] == "synthetic")
```
"""


def _with_class_label(schema: pa.Schema, files: list[str]) -> pa.Schema:
    """``schema`` with ``label`` as a ``datasets.ClassLabel`` named from ``label_name``, where that is well defined.

    The catalog stores ``label`` as a plain integer (a text-conditioned job
    has none); in an export whose every labelled row names its class, and
    each label one name, a loader gets the names with the feature.
    """
    pairs = pads.dataset(files, format="parquet").to_table(columns=["label", "label_name"])
    pairs = pairs.filter(pc.is_valid(pairs["label"])).group_by(["label", "label_name"]).aggregate([]).to_pylist()
    labels = [p["label"] for p in pairs]
    if (not pairs or len(set(labels)) != len(labels) or min(labels) < 0 or max(labels) >= MAX_CLASSES
            or any(not p["label_name"] for p in pairs)):
        return schema
    names = {p["label"]: p["label_name"] for p in pairs}
    hf = json.loads(schema.metadata[b"huggingface"])
    hf["info"]["features"]["label"] = {"names": [names.get(i, str(i)) for i in range(max(labels) + 1)],
                                       "_type": "ClassLabel"}
    return schema.with_metadata({**schema.metadata, b"huggingface": json.dumps(hf).encode()})


MAX_CLASSES = 100_000  # beyond this a label is an id of some other kind, not a class index


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
    schema = _with_class_label(pq.read_schema(files[0]), files) if files else None
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
