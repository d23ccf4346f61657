"""The Arrow schema of every catalog row, real or synthetic.

One schema for both origins so a training mix is a plain concatenation;
generation columns are null on real rows. The schema carries the Hugging Face
``datasets`` metadata, so ``load_dataset("parquet", ...)`` sees ``image`` as
an ``Image`` feature (``struct{bytes, path}``, PNG bytes), and pandas, DuckDB
and Polars read the same files as plain Parquet.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa

from synthgen.records import Provenance, Sample

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

# (name, arrow type, HF dtype or None for special features)
_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("sample_id", pa.string()),
    ("image", IMAGE_TYPE),
    ("origin", pa.string()),  # 'real' | 'synthetic'
    ("status", pa.string()),  # kept | dropped_duplicate | blocked_real_copy
    ("label", pa.int64()),  # class id (null for prompts)
    ("label_name", pa.string()),
    ("prompt", pa.string()),
    ("negative_prompt", pa.string()),
    ("image_sha256", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("source_path", pa.string()),
    ("plan_index", pa.int64()),
    ("seed", pa.int64()),
    ("job_name", pa.string()),
    ("job_digest", pa.string()),
    ("model_id", pa.string()),
    ("model_weights_sha256", pa.string()),
    ("pipeline_class", pa.string()),
    ("scheduler", pa.string()),
    ("scheduler_config", pa.string()),
    ("num_inference_steps", pa.int32()),
    ("guidance_scale", pa.float32()),
    ("batch_size", pa.int32()),
    ("dtype", pa.string()),
    ("device", pa.string()),
    ("torch_version", pa.string()),
    ("diffusers_version", pa.string()),
    ("synthgen_version", pa.string()),
    ("code_commit", pa.string()),
    ("prefect_flow_run_id", pa.string()),
    ("mlflow_run_id", pa.string()),
    ("embedding_model", pa.string()),
    ("embedding", pa.list_(pa.float32())),
    ("clip_score", pa.float32()),
    ("dedup_threshold", pa.float32()),
    ("real_threshold", pa.float32()),
    ("real_dataset", pa.string()),
    ("nn_id", pa.string()),
    ("nn_source", pa.string()),  # run | dataset | real
    ("nn_similarity", pa.float32()),
    ("real_nn_id", pa.string()),
    ("real_nn_similarity", pa.float32()),
    ("real_pixel_nn_id", pa.string()),
    ("real_pixel_distance", pa.float32()),
    ("pixel_threshold", pa.float32()),
    ("drop_reason", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
]

PROVENANCE_FIELDS = [f for f in Provenance.__slots__ if f not in ("embedding_model",)]


def _hf_feature(t: pa.DataType) -> dict:
    if t == IMAGE_TYPE:
        return {"_type": "Image"}
    if pa.types.is_list(t):
        return {"feature": _hf_feature(t.value_type), "_type": "List"}
    name = {pa.string(): "string", pa.binary(): "binary"}.get(t) or str(t)
    if pa.types.is_timestamp(t):
        name = f"timestamp[{t.unit}, tz={t.tz}]"
    return {"dtype": name, "_type": "Value"}


def _build_schema() -> pa.Schema:
    features = {name: _hf_feature(t) for name, t in _COLUMNS}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(n, t) for n, t in _COLUMNS], metadata=meta)


SCHEMA = _build_schema()
COLUMN_NAMES = [n for n, _ in _COLUMNS]


def samples_to_table(samples: list[Sample], embedding_model: str | None = None) -> pa.Table:
    """Turn records into an Arrow table with the catalog schema."""
    cols: dict[str, list] = {n: [] for n in COLUMN_NAMES}
    for s in samples:
        p = s.provenance
        row = {
            "sample_id": s.sample_id,
            "image": {"bytes": s.png, "path": None},
            "origin": s.origin,
            "status": s.status,
            "label": s.class_id,
            "label_name": s.class_name,
            "prompt": s.prompt,
            "negative_prompt": s.negative_prompt,
            "image_sha256": s.image_sha256,
            "width": s.width,
            "height": s.height,
            "source_path": s.source_path,
            "plan_index": s.plan_index if s.plan_index >= 0 else None,
            "seed": s.seed,
            "embedding_model": (p.embedding_model if p else None) or embedding_model,
            "embedding": s.embedding.tolist() if s.embedding is not None else None,
            "clip_score": s.clip_score,
            "nn_id": s.nn_id,
            "nn_source": s.nn_source,
            "nn_similarity": s.nn_similarity,
            "real_nn_id": s.real_nn_id,
            "real_nn_similarity": s.real_nn_similarity,
            "real_pixel_nn_id": s.real_pixel_nn_id,
            "real_pixel_distance": s.real_pixel_distance,
            "drop_reason": s.drop_reason,
            "created_at": s.created_at or datetime.now(timezone.utc),
        }
        for f in PROVENANCE_FIELDS:
            row[f] = getattr(p, f) if p else None
        for name in COLUMN_NAMES:
            cols[name].append(row.get(name))
    return pa.Table.from_pydict(cols, schema=SCHEMA)
