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
from synthgen.model_files import resolve_model_path, weights_sha256
from synthgen.runtime import resolve_device, torch_dtype
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
    img2img: object | None = None  # text-to-image models: the image-to-image pipeline sharing ``pipe``'s modules

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

    def generate(self, samples: list[Sample], init: list[np.ndarray] | None = None,
                 strength: float = 1.0) -> np.ndarray:
        """Sample one batch; returns uint8 images (n, H, W, C) on the CPU, quantised on the device.

        ``init``: one real uint8 (H, W, C) image per sample to start from (image-to-image at ``strength``).
        """
        n = len(samples)
        if not 0 < n <= self.batch_size:
            raise ValueError(f"batch of {n} samples; expected 1..{self.batch_size}")
        if init is not None and len(init) != n:
            raise ValueError(f"{len(init)} init images for {n} samples")
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
        pipe = self.pipe
        if init is not None:
            images = list(init) + [init[-1]] * (self.batch_size - n)  # padding rows start from the last image
            if self.kind == "class":
                common.update(image=init_tensor(images, self.pipe.unet.config, self.spec), strength=strength)
            else:
                if self.img2img is None:
                    raise GeneratorError("init images given, but the generator was loaded without img2img=True")
                common.update(image=init_pil(images, self.pipe, self.spec), strength=strength)
                pipe, size = self.img2img, {}  # img2img's output has the input image's size
        if self.kind == "class":
            out = pipe(class_labels=[r.class_id for r in rows], **size, **common)
        else:
            negative = [r.negative_prompt or "" for r in rows]
            out = pipe(
                prompt=[r.prompt for r in rows],
                negative_prompt=negative if any(negative) else None,
                **size,
                **common,
            )
        return to_uint8(out.images[:n])


def init_tensor(images: list[np.ndarray], unet_config, spec: GeneratorSpec) -> torch.Tensor:
    """Real uint8 (H, W, C) images as the class model's input: (n, C, H, W) in [0, 1] at the sampled size."""
    size = unet_config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    size = (spec.height or size[0], spec.width or size[1])
    channels = unet_config.in_channels
    x = torch.from_numpy(np.stack([_channels(a, channels) for a in images])).permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != size:
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1)


def init_pil(images: list[np.ndarray], pipe, spec: GeneratorSpec) -> list:
    """Real uint8 images as RGB PIL images at the size a text-to-image model samples (the spec's, else its own)."""
    from PIL import Image

    default = int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
    size = (spec.width or default, spec.height or default)
    return [Image.fromarray(_channels(a, 3)).resize(size, Image.BICUBIC) for a in images]


def _channels(arr: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 (H, W, C) image with ``channels`` channels (grey <-> RGB; alpha dropped)."""
    arr = arr[..., None] if arr.ndim == 2 else arr[..., :3]
    if arr.shape[-1] == channels:
        return arr
    if channels == 1:
        grey = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.round(grey)[..., None].astype(np.uint8)
    return np.repeat(arr[..., :1], channels, axis=-1)


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


def load_generator(spec: GeneratorSpec, kind: Literal["class", "text"], class_ids: list[int] | None = None,
                   img2img: bool = False) -> Generator:
    """Load the spec's model through ``from_pretrained`` and check it can serve the job.

    ``img2img``: the job starts from real images; a text-to-image model then gets its
    image-to-image pipeline too (``AutoPipelineForImage2Image.from_pipe``: same modules, no reload).
    """
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
    i2i = None
    if img2img and kind == "class" and class_name != "ClassConditionalPipeline":
        raise GeneratorError(f"{spec.model}: a {class_name} has no image-to-image path for conditioning.init_images "
                             "(the embedded ClassConditionalPipeline and text-to-image models have)")
    if img2img and kind == "text":
        from diffusers import AutoPipelineForImage2Image

        try:
            i2i = AutoPipelineForImage2Image.from_pipe(pipe)
        except (ValueError, KeyError) as exc:  # a model family with no image-to-image pipeline
            raise GeneratorError(f"{spec.model}: no image-to-image pipeline for conditioning.init_images "
                                 f"({exc})") from None
        i2i.set_progress_bar_config(disable=True)
    return Generator(
        pipe=pipe,
        kind=kind,
        model_id=spec.model,
        weights_sha256=weights_sha256(_model_folder(path)),
        spec=spec,
        device=device,
        dtype=dtype,
        options=options,
        img2img=i2i,
    )
