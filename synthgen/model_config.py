"""What a diffusers model's component configs say about sizes, checked for type first.

The configs are read before any model loads (``synthgen.model_check``); a
value of the wrong type (``"sample_size": "abc"``) would otherwise surface
as a tensor error deep inside the first batch, after Prefect and MLflow have
started. From the same configs follow the image size a model makes by
default and the multiple that heights and widths must be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(v: object) -> bool:
    return _is_int(v) and v > 0  # type: ignore[operator]


def _ints(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(_positive_int(x) for x in v)


def _int_or_ints(v: object) -> bool:
    return _positive_int(v) or _ints(v)


def _strings(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) and x for x in v)


# Keys whose values set tensor shapes, with what each must be (null is allowed: diffusers' own default).
_SHAPE_KEYS: dict[str, tuple[Callable[[object], bool], str]] = {
    "sample_size": (_int_or_ints, "a positive integer or a list of them"),
    "in_channels": (_positive_int, "a positive integer"),
    "out_channels": (_positive_int, "a positive integer"),
    "latent_channels": (_positive_int, "a positive integer"),
    "layers_per_block": (_int_or_ints, "a positive integer or a list of them"),
    "norm_num_groups": (_positive_int, "a positive integer"),
    "num_class_embeds": (_positive_int, "a positive integer"),
    "num_embeds_ada_norm": (_positive_int, "a positive integer"),
    "patch_size": (_positive_int, "a positive integer"),
    "cross_attention_dim": (_int_or_ints, "a positive integer or a list of them"),
    "attention_head_dim": (_int_or_ints, "a positive integer or a list of them"),
    "block_out_channels": (_ints, "a non-empty list of positive integers"),
    "down_block_types": (_strings, "a non-empty list of block names"),
    "up_block_types": (_strings, "a non-empty list of block names"),
}


def config_type_problem(config: dict) -> str | None:
    """The first shape-setting key of a component config whose value has the wrong type, described; else None."""
    for key, (ok, what) in _SHAPE_KEYS.items():
        value = config.get(key)
        if value is not None and not ok(value):
            return f"{key!r} is {value!r}; it must be {what}"
    return None


def _downscale(config: dict) -> int:
    """2 ** (levels - 1): every level but the last halves the resolution (diffusers' UNet2DModel and VAEs)."""
    return 2 ** (len(config.get("block_out_channels") or [0]) - 1)


@dataclass(frozen=True)
class SizeRules:
    """The image size a model makes by default and the multiple heights and widths must be."""

    default: tuple[int, int] | None  # (height, width); None where the configs do not say
    multiple: int
    why: str  # what the multiple comes from, for the message


def size_rules(configs: dict[str, dict]) -> SizeRules:
    """From the ``unet`` and ``vae`` configs of a pipeline (either may be absent)."""
    unet, vae = configs.get("unet"), configs.get("vae")
    vae_factor = _downscale(vae) if vae else 1
    multiple, why = vae_factor, "the VAE's downscaling factor"
    if unet and unet.get("_class_name") == "UNet2DModel":
        # UNet2DModel's up blocks double without being told the skip's size, so an odd level breaks the
        # concatenation (UNet2DConditionModel passes the size on and takes any latent size).
        multiple, why = vae_factor * _downscale(unet), "the UNet's downsampling" + (" times the VAE's" if vae else "")
    default = None
    size = unet.get("sample_size") if unet else None
    if size is not None:
        h, w = (size, size) if _is_int(size) else (size[0], size[-1])
        default = (h * vae_factor, w * vae_factor)
    return SizeRules(default, multiple, why)
