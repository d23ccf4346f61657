"""The record types that travel through every stage.

``Sample`` is the one per-image record: the plan creates it (id, condition,
seed), each stage fills its part (generate, encode, embed, guard, score),
the decision stage writes status and evidence into it, and the catalog turns
a list of them into an Arrow batch (``catalog.schema``).
``Provenance`` holds what every sample of one run shares (model, weights
hash, sampler, library versions, run ids); samples point to one instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from PIL import Image

Origin = Literal["real", "synthetic"]

# Row status values. Dropped rows are written too, with their evidence.
KEPT = "kept"
DUPLICATE = "dropped_duplicate"  # near-duplicate of a kept synthetic sample
REAL_COPY = "blocked_real_copy"  # near-copy of a real sample (memorisation guard)
LOW_QUALITY = "low_quality"  # failed a quality rule (e.g. CLIP alignment below the spec's minimum)
PENDING = "pending"  # generated, not yet deduplicated (staging only)
STATUSES = (KEPT, DUPLICATE, REAL_COPY, LOW_QUALITY)  # what a committed row can be (the CLI's --status)

# Where a nearest neighbour was found.
NN_RUN = "run"  # an earlier kept sample of this run (plan order)
NN_DATASET = "dataset"  # a kept sample of an earlier version of the dataset
NN_REAL = "real"  # a row of the designated real dataset


@dataclass(slots=True)
class Provenance:
    """What all samples of one generation run share."""

    job_name: str
    job_digest: str
    model_id: str
    model_weights_sha256: str
    pipeline_class: str
    scheduler: str
    scheduler_config: str  # JSON
    num_inference_steps: int
    guidance_scale: float
    batch_size: int
    dtype: str
    device: str
    torch_version: str
    diffusers_version: str
    synthgen_version: str
    code_commit: str | None
    embedding_model: str
    dedup_threshold: float
    real_threshold: float
    pixel_threshold: float | None
    real_dataset: str | None
    prefect_flow_run_id: str | None = None
    mlflow_run_id: str | None = None
    png_compress_level: int | None = None  # zlib level of the stored PNG bytes
    png_encoder: str | None = None  # synthgen.png's encoder of those bytes (null on older rows: pillow)
    generator_options: str | None = None  # JSON: compile, channels_last, fuse_qkv, sdpa as applied
    watermark_method: str | None = None  # e.g. 'dwtDctSvd:72' when the run marked its images
    init_dataset: str | None = None  # real-image guidance: the real dataset the samples start from
    init_version: int | None = None  # ... at this version
    init_strength: float | None = None  # ... noised this far (diffusers' img2img strength)


@dataclass(slots=True)
class Sample:
    """One image and everything known about it, stage by stage."""

    sample_id: str
    origin: Origin
    plan_index: int = -1
    class_id: int | None = None
    class_name: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    prompt_template: str | None = None  # the prompt program's template this prompt was written from
    prompt_attributes: dict[str, str] | None = None  # its attribute values (``synthgen.prompts``)
    seed: int | None = None
    provenance: Provenance | None = None
    source_path: str | None = None  # real rows: the file it was ingested from
    init_image_id: str | None = None  # real-image guidance: the real row this sample started from
    # filled by generation / ingest
    pixels: np.ndarray | None = None  # the generator's uint8 HWC array, until the batch's stages are done
    image: Image.Image | None = None
    png: bytes | None = None
    image_sha256: str | None = None
    width: int | None = None
    height: int | None = None
    created_at: datetime | None = None
    watermark: str | None = None  # hex payload embedded in the pixels (synthgen.watermark), when marked
    # filled by the embedder
    embedding: np.ndarray | None = None
    clip_score: float | None = None
    # filled by dedup
    status: str = PENDING
    drop_reason: str | None = None
    nn_id: str | None = None
    nn_source: str | None = None
    nn_similarity: float | None = None
    real_nn_id: str | None = None
    real_nn_similarity: float | None = None
    real_pixel_nn_id: str | None = None  # closest real image in pixel space (memorisation guard)
    real_pixel_distance: float | None = None
    init_distance: float | None = None  # pixel distance (the guard's) to its own init image
    # filled by the score stage: each rule's evidence columns (``synthgen.rules``), by column name
    measures: dict[str, float | None] = field(default_factory=dict)
