"""Any diffusers pipeline as a batched, deterministic generator.

``load_generator`` loads the embedded digits model, a local diffusers folder
or a hub id through ``from_pretrained`` and wraps it in a ``Generator`` that
samples fixed-size batches. Two rules make a sample's pixels independent of
how it was requested:

1. each sample's noise comes from its own ``torch.Generator`` seeded with the
   sample's plan seed (diffusers accepts one generator per image), and
2. the denoiser always runs at the configured batch size: a short last batch
   is padded with dummy rows, because CPU kernels round differently at
   different batch sizes (~1e-6), enough to flip a pixel after quantisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from synthgen import accel
from synthgen.records import Sample
from synthgen.runtime import resolve_device, resolve_model_path, torch_dtype, weights_sha256
from synthgen.spec import GeneratorSpec

CLASS_PIPELINES = {"ClassConditionalPipeline", "DiTPipeline"}
_DUMMY_SEED = 0x5EED


class GeneratorError(ValueError):
    """The model cannot serve this job (wrong kind, unknown class, bad size)."""


@dataclass
class Generator:
    """A loaded diffusers pipeline plus the settings it samples with."""

    pipe: object
    kind: Literal["class", "text"]
    model_id: str
    weights_sha256: str
    spec: GeneratorSpec
    device: str
    dtype: torch.dtype
    options: dict = field(default_factory=dict)  # speed options as applied (``synthgen.accel``)

    @property
    def batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def pipeline_class(self) -> str:
        return type(self.pipe).__name__

    @property
    def scheduler_name(self) -> str:
        return type(self.pipe.scheduler).__name__

    @property
    def scheduler_config(self) -> str:
        """The scheduler's config as canonical JSON (enough to rebuild it)."""
        return json.dumps(dict(self.pipe.scheduler.config), sort_keys=True, default=str)

    def generate(self, samples: list[Sample]) -> np.ndarray:
        """Sample one batch; returns uint8 images (n, H, W, C) on the CPU, quantised on the device."""
        n = len(samples)
        if not 0 < n <= self.batch_size:
            raise ValueError(f"batch of {n} samples; expected 1..{self.batch_size}")
        rows = list(samples) + [samples[-1]] * (self.batch_size - n)
        seeds = [s.seed for s in samples] + [_DUMMY_SEED + i for i in range(self.batch_size - n)]
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        common = dict(
            num_inference_steps=self.spec.steps,
            guidance_scale=self.spec.guidance_scale,
            generator=gens,
            output_type="pt",  # stay on the device: quantise there, copy 1 byte per channel to the host
        )
        size = {k: v for k, v in (("height", self.spec.height), ("width", self.spec.width)) if v}
        if self.kind == "class":
            out = self.pipe(class_labels=[r.class_id for r in rows], **size, **common)
        else:
            negative = [r.negative_prompt or "" for r in rows]
            out = self.pipe(
                prompt=[r.prompt for r in rows],
                negative_prompt=negative if any(negative) else None,
                **size,
                **common,
            )
        return to_uint8(out.images[:n])


def to_uint8(images) -> np.ndarray:
    """(n, H, W, C) uint8 on the host from a pipeline's images in [0, 1].

    A tensor (n, C, H, W) is quantised on its own device before the copy (a
    quarter of float32's bytes cross the bus); pipelines that return numpy
    anyway (DiT) are quantised on the host. Both round like diffusers'
    ``numpy_to_pil`` on float32 values, so the pixels are the same either way.
    """
    if isinstance(images, torch.Tensor):
        u8 = (images.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return u8.permute(0, 2, 3, 1).cpu().numpy()
    arr = np.asarray(images, dtype=np.float32)
    return (np.clip(arr, 0.0, 1.0) * 255).round().astype(np.uint8)


def _pipeline_class_name(path: str) -> str:
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(path)
    except Exception as exc:  # noqa: BLE001 - diffusers raises several types here
        raise GeneratorError(f"cannot read a diffusers model at {path!r}: {exc}") from None
    return str(config.get("_class_name", ""))


def _load_pipeline(path: str, class_name: str, kind: str, dtype: torch.dtype):
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    from synthgen.pipelines.class_conditional import ClassConditionalPipeline

    diffusers_logging.disable_progress_bar()  # our own progress display is enough
    is_class_model = class_name in CLASS_PIPELINES
    if is_class_model != (kind == "class"):
        want = "class-conditional" if kind == "class" else "text-to-image"
        raise GeneratorError(f"{path!r} is a {class_name}, but the job's conditioning needs a {want} model")
    if class_name == "ClassConditionalPipeline":
        return ClassConditionalPipeline.from_pretrained(path, dtype=dtype)
    if kind == "class":
        return DiffusionPipeline.from_pretrained(path, dtype=dtype)
    return AutoPipelineForText2Image.from_pretrained(path, dtype=dtype)


def _num_classes(pipe) -> int | None:
    if hasattr(pipe, "null_class"):
        return pipe.null_class
    cfg = getattr(getattr(pipe, "transformer", None), "config", None)
    return getattr(cfg, "num_embeds_ada_norm", None) if cfg is not None else None


def _model_folder(path: str) -> Path:
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path, local_files_only=True))


def load_generator(spec: GeneratorSpec, kind: Literal["class", "text"], class_ids: list[int] | None = None) -> Generator:
    """Load the spec's model through ``from_pretrained`` and check it can serve the job."""
    path = resolve_model_path(spec.model)
    device = resolve_device(spec.device)
    dtype = torch_dtype(spec.dtype, device)
    class_name = _pipeline_class_name(path)
    pipe = _load_pipeline(path, class_name, kind, dtype)
    if spec.scheduler:
        import diffusers

        sched_cls = getattr(diffusers, spec.scheduler, None)
        if sched_cls is None:
            raise GeneratorError(f"generator.scheduler: diffusers has no scheduler {spec.scheduler!r}")
        pipe.scheduler = sched_cls.from_config(pipe.scheduler.config)
    if kind == "class" and class_ids:
        n = _num_classes(pipe)
        bad = [c for c in class_ids if n is not None and c >= n]
        if bad:
            raise GeneratorError(f"conditioning.classes: ids {bad} out of range; {spec.model} has {n} classes")
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    options = accel.apply(pipe, accel.resolve(spec, device))
    return Generator(
        pipe=pipe,
        kind=kind,
        model_id=spec.model,
        weights_sha256=weights_sha256(_model_folder(path)),
        spec=spec,
        device=device,
        dtype=dtype,
        options=options,
    )
