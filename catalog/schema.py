"""The Arrow schema of every catalog row, real or synthetic, from one column declaration.

One schema for both origins so a training mix is a plain concatenation;
generation columns are null on real rows. ``COLUMNS`` declares each column
once: its name, Arrow type and how it is read from a ``Sample``; the schema,
``samples_to_table``, the decision update and the rules' evidence columns
all follow from it. The schema carries the Hugging Face ``datasets``
metadata, so ``load_dataset("parquet", ...)`` sees ``image`` as an ``Image``
feature (``struct{bytes, path}``, PNG bytes), and pandas, DuckDB and Polars
read the same files as plain Parquet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from synthgen.prompts import attributes_json
from synthgen.records import Sample
from synthgen.rules import evidence_columns

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@dataclass(frozen=True)
class Column:
    """One catalog column: name, Arrow type, and its value for a sample.

    ``attr``: the ``Sample`` attribute it mirrors one to one (None for
    derived columns), so stored rows can be read back into samples.
    ``decision``: set by the decision stage (status and evidence), rewritten
    by the commit and by ``rededup``.
    """

    name: str
    type: pa.DataType
    get: Callable[[Sample], Any]
    attr: str | None = None
    decision: bool = False


def _attr(name: str, t: pa.DataType, attr: str | None = None, decision: bool = False) -> Column:
    attr = attr or name
    return Column(name, t, lambda s: getattr(s, attr), attr, decision)


def _prov(name: str, t: pa.DataType) -> Column:
    """A per-run field, shared by all samples through their ``Provenance``."""
    return Column(name, t, lambda s: getattr(s.provenance, name) if s.provenance else None)


def _measure(name: str) -> Column:
    """A rule's evidence column (``synthgen.rules``), measured by the score stage."""
    return Column(name, pa.float32(), lambda s: s.measures.get(name))


_S, _F, _I = pa.string(), pa.float32(), pa.int32()
COLUMNS: list[Column] = [
    _attr("sample_id", _S),
    Column("image", IMAGE_TYPE, lambda s: {"bytes": s.png, "path": None}),
    _attr("origin", _S),  # 'real' | 'synthetic'
    _attr("status", _S, decision=True),  # kept | dropped_duplicate | blocked_real_copy | low_quality | pending
    _attr("label", pa.int64(), "class_id"),  # class id (null for prompts)
    _attr("label_name", _S, "class_name"),
    _attr("prompt", _S),
    _attr("negative_prompt", _S),
    _attr("prompt_template", _S),  # the prompt program's template the prompt was written from (null: no program)
    # its attribute values as JSON text ({"lighting":"dusk"}; DuckDB: prompt_attributes->>'lighting'): one string
    # column whatever attributes a job has, so every shard of a catalog keeps one schema
    Column("prompt_attributes", _S, lambda s: attributes_json(s.prompt_attributes)),
    _attr("image_sha256", _S),
    _attr("width", _I),
    _attr("height", _I),
    _prov("png_compress_level", _I),  # the image bytes' zlib level (image_sha256 is over pixels, not bytes)
    _prov("png_encoder", _S),  # synthgen.png's encoder of the image bytes (null on rows from before: pillow)
    _attr("source_path", _S),
    Column("plan_index", pa.int64(), lambda s: s.plan_index if s.plan_index >= 0 else None),  # null on real rows
    _attr("seed", pa.int64()),
    *(_prov(n, t) for n, t in [
        ("job_name", _S), ("job_digest", _S), ("model_id", _S), ("model_weights_sha256", _S),
        ("pipeline_class", _S), ("scheduler", _S), ("scheduler_config", _S), ("num_inference_steps", _I),
        ("guidance_scale", _F), ("batch_size", _I), ("dtype", _S), ("device", _S), ("torch_version", _S),
        ("diffusers_version", _S), ("synthgen_version", _S), ("code_commit", _S),
        ("prefect_flow_run_id", _S), ("mlflow_run_id", _S),
    ]),
    _prov("generator_options", _S),  # JSON of the speed options the model ran with (regeneration reuses them)
    _attr("watermark", _S),  # hex payload in the pixels (null: unmarked); audit decodes it, regeneration re-applies it
    _prov("watermark_method", _S),  # method:strength of the run's watermark
    # real rows have no Provenance: ingest passes the model to samples_to_table
    Column("embedding_model", _S, lambda s: s.provenance.embedding_model if s.provenance else None),
    Column("embedding", pa.list_(_F), lambda s: s.embedding.tolist() if s.embedding is not None else None),
    _attr("clip_score", _F),
    _prov("dedup_threshold", _F),
    _prov("real_threshold", _F),
    _prov("real_dataset", _S),
    _attr("nn_id", _S, decision=True),
    _attr("nn_source", _S, decision=True),  # run | dataset | real
    _attr("nn_similarity", _F, decision=True),
    _attr("real_nn_id", _S, decision=True),
    _attr("real_nn_similarity", _F, decision=True),
    _attr("real_pixel_nn_id", _S),  # the pixel guard's closest real image, measured at generation
    _attr("real_pixel_distance", _F),
    _prov("pixel_threshold", _F),
    _prov("init_dataset", _S),  # real-image guidance: the real dataset and version the sample started from,
    _prov("init_version", _I),
    _prov("init_strength", pa.float64()),  # how far that image was noised (float64: int(steps x strength) must not move),
    _attr("init_image_id", _S),  # which of its rows,
    _attr("init_distance", _F),  # and the guard's pixel distance to it (a near-copy of its source is blocked)
    _attr("drop_reason", _S, decision=True),
    Column("created_at", pa.timestamp("us", tz="UTC"), lambda s: s.created_at or datetime.now(timezone.utc)),
    *(_measure(n) for n in evidence_columns()),
]
DECISION_COLUMNS = [c for c in COLUMNS if c.decision]
COLUMN_NAMES = [c.name for c in COLUMNS]


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
    features = {c.name: _hf_feature(c.type) for c in COLUMNS}
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(c.name, c.type) for c in COLUMNS], metadata=meta)


SCHEMA = _build_schema()


def samples_to_table(samples: list[Sample], embedding_model: str | None = None) -> pa.Table:
    """Turn records into an Arrow table with the catalog schema.

    ``embedding_model`` fills that column for samples without a ``Provenance``
    (real rows from ingest).
    """
    cols = {c.name: [c.get(s) for s in samples] for c in COLUMNS}
    cols["embedding_model"] = [m or embedding_model for m in cols["embedding_model"]]
    return pa.Table.from_pydict(cols, schema=SCHEMA)


def samples_from_table(table: pa.Table) -> list[Sample]:
    """Samples holding what ``table``'s columns store (those mirroring a ``Sample`` field,
    the embedding and the rules' evidence); what the decision stage reads back from staged
    or committed rows."""
    n = table.num_rows
    names = set(table.column_names)
    samples = [Sample(sample_id="", origin="synthetic") for _ in range(n)]
    for c in COLUMNS:
        if c.name not in names or c.attr is None:
            continue
        for s, v in zip(samples, table[c.name].to_pylist()):
            setattr(s, c.attr, v)
    if "embedding" in names:
        emb = table["embedding"].combine_chunks()
        flat = np.asarray(emb.values.to_numpy(zero_copy_only=False), np.float32).reshape(n, -1)
        for s, e in zip(samples, flat):
            s.embedding = e
    for name in evidence_columns():
        if name in names:
            for s, v in zip(samples, table[name].to_pylist()):
                s.measures[name] = v
    return samples


def write_decisions(table: pa.Table, samples: list[Sample]) -> pa.Table:
    """``table`` with its decision columns (status, reason, evidence) taken from ``samples`` (same rows)."""
    for c in DECISION_COLUMNS:
        table = table.set_column(SCHEMA.get_field_index(c.name), c.name, pa.array([c.get(s) for s in samples], c.type))
    return table
