"""The generator's speed options (compile, channels_last, SDPA, fused QKV), applied once at load.

``resolve`` turns the spec's choices (``None`` = the device's default: on
for CUDA, off elsewhere, so CPU runs keep their exact numerics) into the
options actually used; ``apply`` sets them on a loaded pipeline. The
resolved options are recorded per row (``generator_options``) and
``verify --regenerate`` loads the model with the same ones, because
compiled kernels, memory layouts and fused projections may round
differently.
"""

from __future__ import annotations

import json

import torch

from synthgen.spec import GeneratorSpec

DENOISERS = ("unet", "transformer")


def resolve(spec: GeneratorSpec, device: str) -> dict:
    """The options this load uses: spec values, ``None`` resolved for ``device``."""
    on_gpu = device.startswith("cuda")
    return {
        "compile": spec.compile,
        "channels_last": on_gpu if spec.channels_last is None else spec.channels_last,
        "fuse_qkv": on_gpu if spec.fuse_qkv is None else spec.fuse_qkv,
        "sdpa": spec.sdpa,
    }


def apply(pipe, options: dict) -> dict:
    """Set ``options`` on ``pipe``; returns what was applied (an option a model does not offer is recorded False)."""
    applied = dict(options)
    modules = [m for m in (getattr(pipe, n, None) for n in (*DENOISERS, "vae")) if isinstance(m, torch.nn.Module)]
    if options["sdpa"]:
        from diffusers.models.attention_processor import AttnProcessor2_0

        for m in modules:
            if hasattr(m, "set_attn_processor"):
                m.set_attn_processor(AttnProcessor2_0())
    if options["fuse_qkv"]:
        fused = [m.fuse_qkv_projections() for m in modules if hasattr(m, "fuse_qkv_projections")]
        applied["fuse_qkv"] = bool(fused)
    if options["channels_last"]:
        for m in modules:
            m.to(memory_format=torch.channels_last)
    if options["compile"]:
        # Static shapes: the engine always runs the configured (padded) batch, so one graph serves every call.
        for name in DENOISERS:
            if isinstance(getattr(pipe, name, None), torch.nn.Module):
                setattr(pipe, name, torch.compile(getattr(pipe, name), dynamic=False))
        if getattr(pipe, "vae", None) is not None:
            pipe.vae.decode = torch.compile(pipe.vae.decode, dynamic=False)
    return applied


def options_json(options: dict) -> str:
    """Canonical JSON of the applied options (the ``generator_options`` column)."""
    return json.dumps(options, sort_keys=True)


def spec_fields(recorded: str | None) -> dict:
    """GeneratorSpec fields that reproduce recorded options; {} for rows written before they were recorded."""
    if not recorded:
        return {}
    opts = json.loads(recorded)
    return {k: opts[k] for k in ("compile", "channels_last", "fuse_qkv", "sdpa") if k in opts}
