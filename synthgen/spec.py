"""The job spec: a typed, validated description of one synthetic-data job.

A spec is validated completely before any model loads, so a typo costs no
GPU time and writes nothing. ``load_spec`` turns pydantic's errors into one
message that names each bad field.
"""

from __future__ import annotations

import hashlib
import json
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, create_model, field_validator, model_validator

from synthgen.path_names import component_problem
from synthgen.png import DEFAULT_PNG_ENCODER, PngEncoder
from synthgen.rules import RULES
from synthgen.strict_yaml import load_yaml

EMBEDDED_GENERATOR = "embedded:digits"
EMBEDDED_EMBEDDER = "embedded:digits-clip"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
REF_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}(@[1-9][0-9]{0,8})?$"  # a dataset, optionally at a version

# Friendly scheduler names -> diffusers classes (any diffusers class name works too).
SCHEDULER_ALIASES = {
    "dpm++2m": "DPMSolverMultistepScheduler",
    "dpmsolver": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
    "pndm": "PNDMScheduler",
    "lms": "LMSDiscreteScheduler",
}


class SpecError(ValueError):
    """A job spec that cannot be run; the message names every bad field."""


def _takes_number_not_bool(annotation: object) -> bool:
    """Whether a field's type admits an int or float but not a bool (``int``, ``int | None``, ...)."""
    args = typing.get_args(annotation) or (annotation,)
    return bool not in args and any(a in (int, float) for a in args)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: object, info: ValidationInfo) -> object:
        # pydantic's lax mode reads true as 1: `steps: true` would silently run one step.
        if isinstance(v, bool) and info.field_name and _takes_number_not_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number, not a boolean")
        return v


class GeneratorSpec(_Strict):
    """Which diffusion model samples the images, and how."""

    model: str = Field(EMBEDDED_GENERATOR, description="'embedded:digits', a local diffusers folder, or a hub id")
    scheduler: str | None = Field(None, description="alias (dpm++2m, ddim, euler, ...) or diffusers class; None keeps the model's")
    steps: int = Field(10, ge=1, le=1000)
    guidance_scale: float = Field(2.0, ge=0.0, le=50.0)
    height: int | None = Field(None, ge=8, le=4096)
    width: int | None = Field(None, ge=8, le=4096)
    batch_size: int = Field(64, ge=1, le=4096)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    devices: list[Annotated[str, Field(pattern=r"^(cpu|cuda:\d+)$")]] | None = Field(
        None, min_length=1, description="one worker process per entry, each taking whole shards (e.g. "
        "[cuda:0, cuda:1]); null: every visible GPU when there are several. Not part of the job's identity")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: bfloat16 on CUDA, float32 elsewhere")
    compile: bool = Field(False, description="torch.compile the denoiser and the VAE decoder (static, padded batch)")
    channels_last: bool | None = Field(None, description="channels_last memory format; null: on CUDA only")
    fuse_qkv: bool | None = Field(None, description="fuse attention QKV projections where diffusers offers it; "
                                  "null: on CUDA only")
    sdpa: bool = Field(True, description="torch's scaled_dot_product_attention processors")
    threads: int | None = Field(1, ge=1, le=256, description="torch CPU threads; 1 is fastest for tiny models")
    workers: int | None = Field(
        None, ge=1, le=256, description="post-processing workers (encode, embed, guard, score); null: the "
        "cores the sampler leaves. Not part of the job's identity: the output does not depend on it",
    )

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str | None) -> str | None:
        if v is None:
            return v
        name = SCHEDULER_ALIASES.get(v.lower(), v)
        if not name.endswith("Scheduler"):
            raise ValueError(f"unknown scheduler {v!r}; use one of {sorted(SCHEDULER_ALIASES)} or a diffusers class name")
        return name


class ClassCondition(_Strict):
    """One class to generate: the model's class id and a human name."""

    id: int = Field(ge=0)
    name: str = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, v: str) -> str:
        # Exports write each class into a folder of its name: `../x` or `/abs` would write elsewhere.
        problem = component_problem(v)
        if problem:
            raise ValueError(f"class name {v!r} {problem}; it names the class's folder in an export, "
                             "so it must be one file name")
        return v


class InitImagesSpec(_Strict):
    """Real-image guidance (img2img): each sample starts from a real image of its class, noised to ``strength``."""

    dataset: str = Field(pattern=REF_PATTERN, description="the real dataset, NAME or NAME@VERSION (pin the version: "
                         "without it the head at load time is used, and recorded per row)")
    strength: float = Field(gt=0.0, le=1.0, description="how far the real image is noised (diffusers' img2img "
                            "strength): int(steps * strength) of the steps are denoised; 1 keeps nothing of it")
    classes: dict[str, str] | None = Field(
        None, description="prompts only: prompt -> the real class (label_name) its source images come from; "
        "a prompt not listed draws from the whole real set. Class-conditioned jobs match the real rows by class name")

    @property
    def name(self) -> str:
        return self.dataset.partition("@")[0]

    @property
    def version(self) -> int | None:
        v = self.dataset.partition("@")[2]
        return int(v) if v else None


class Conditioning(_Strict):
    """What to condition on: exactly one of ``classes`` or ``prompts``."""

    classes: list[ClassCondition] | None = None
    prompts: list[str] | None = None
    negative_prompt: str | None = None
    caption_template: str = Field(
        "a photo of a {name}", description="caption for a class, used for CLIP alignment scores"
    )
    init_images: InitImagesSpec | None = Field(
        None, description="start every sample from a real image of its class (img2img); null: from noise")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Conditioning":
        if (self.classes is None) == (self.prompts is None):
            raise ValueError("give exactly one of 'classes' or 'prompts'")
        items = self.classes if self.classes is not None else self.prompts
        if not items:
            raise ValueError("the list of conditions is empty")
        if self.classes is not None:
            ids = [c.id for c in self.classes]
            if len(set(ids)) != len(ids):
                raise ValueError("class ids must be unique")
            names = [c.name for c in self.classes]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"class names must be unique; given more than once: {', '.join(map(repr, twice))}")
        if self.prompts is not None and any(not p.strip() for p in self.prompts):
            raise ValueError("prompts must not be empty strings")
        init = self.init_images
        if init is not None and init.classes is not None:
            if self.prompts is None:
                raise ValueError("init_images.classes maps prompts to real classes; a class-conditioned job "
                                 "matches its real rows by class name")
            unknown = sorted(set(init.classes) - set(self.prompts))
            if unknown:
                raise ValueError(f"init_images.classes names prompts the job does not have: {unknown}")
        if "{name}" not in self.caption_template:
            raise ValueError("caption_template must contain '{name}'")
        try:  # formatted per sample later, inside the flow: a bad template must fail here instead
            self.caption("x")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"caption_template {self.caption_template!r} does not format with just {{name}} "
                             f"({type(exc).__name__}: {exc}); write a literal brace as '{{{{' or '}}}}'") from None
        return self

    def caption(self, class_name: str) -> str:
        """The text a class-conditioned sample is scored against."""
        return self.caption_template.format(name=class_name)

    @property
    def kind(self) -> Literal["class", "text"]:
        return "class" if self.classes is not None else "text"


class EmbedderSpec(_Strict):
    """The CLIP model whose image embeddings drive dedup and quality scores."""

    model: str = Field(EMBEDDED_EMBEDDER, description="'embedded:digits-clip', 'clip-ViT-B-32', or a local folder")
    batch_size: int = Field(256, ge=1, le=8192)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")


class _DedupFields(_Strict):
    """Near-duplicate and memorisation thresholds (cosine similarity), and each rule's own field."""

    threshold: float = Field(0.97, gt=0.0, le=1.0, description="drop if this close to a kept synthetic sample")
    real_threshold: float = Field(0.95, gt=0.0, le=1.0, description="block if CLIP-this close to a real sample")
    pixel_threshold: float | None = Field(
        0.24, gt=0.0, le=2.0,
        description="block if a real image is this close in pixel space (shift-tolerant tiled RMS of "
        "standardised 16px thumbnails; copies <= 0.21, distinct digits >= 0.27); null disables",
    )
    real_dataset: str | None = Field(None, pattern=NAME_PATTERN, description="real dataset to guard against")
    keep: Literal["first", "quality"] = Field(
        "first", description="which sample of a duplicate pair stays: earliest in plan, or best CLIP alignment"
    )
    min_clip_score: float | None = Field(
        None, ge=-1.0, le=1.0, description="rows whose image-caption cosine is below this get status low_quality"
    )


# Fields that per-sample rules add (``synthgen.rules``): a rule declares its field, so adding one
# edits only the rule and the list of rules. Off (null), such a field is left out of the digest,
# so a job that does not use a new rule keeps its identity (and its committed version).
RULE_FIELDS = {r.reads: r.spec_field for r in RULES if r.spec_field is not None}
DedupSpec = create_model("DedupSpec", __base__=_DedupFields, __module__=__name__, **RULE_FIELDS)
DedupSpec.__doc__ = _DedupFields.__doc__


class WatermarkSpec(_Strict):
    """An invisible watermark (``synthgen.watermark``) with a payload derived from each sample id."""

    enabled: bool = Field(False, description="mark every generated image; needs images of at least 256x256 pixels")
    method: Literal["dwtDctSvd", "dwtDct"] = Field(
        "dwtDctSvd", description="dwtDctSvd survives JPEG q75 and a 75% resize; dwtDct (SDXL's) does not "
        "(bench/bench_watermark.py)")
    strength: int = Field(72, ge=1, le=255, description="embedding scale (higher: more robust, lower PSNR)")


class OutputSpec(_Strict):
    """Where the samples go."""

    dataset: str = Field(pattern=NAME_PATTERN)
    # 256: four whole batches of the default generator.batch_size (64); the two defaults must agree.
    shard_size: int = Field(256, ge=1, le=1_000_000, description="images per shard (the unit of work and resume)")
    png_compress_level: int = Field(
        1, ge=0, le=9, description="zlib level of the stored PNGs (lossless at every level; recorded per row). "
        "1: about half the time of 6 at 512 px for ~10% more bytes (bench/bench_png.py)",
    )
    png_encoder: PngEncoder = Field(
        DEFAULT_PNG_ENCODER, description="PNG encoder (recorded per row; image_sha256 is over pixels either way). opencv: "
        "libpng, Up filter, RLE, GIL released, ~3x faster than pillow at 512 px (bench/bench_png.py); "
        "pillow: the bytes of jobs from before this field",
    )
    watermark: WatermarkSpec = WatermarkSpec()


class JobSpec(_Strict):
    """A whole synthetic-data job, as written in a YAML file."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    generator: GeneratorSpec = GeneratorSpec()
    conditioning: Conditioning
    images_per_condition: int = Field(ge=1, le=10_000_000)
    seed: int = Field(0, ge=0, lt=2**63)
    embedder: EmbedderSpec = EmbedderSpec()
    dedup: DedupSpec = DedupSpec()
    output: OutputSpec

    @model_validator(mode="after")
    def _whole_batches(self) -> "JobSpec":
        # The denoiser always runs full batches (padding keeps samples bit-identical),
        # so a shard that is not a whole number of batches wastes compute on padding.
        if self.output.shard_size % self.generator.batch_size:
            raise ValueError(
                f"output.shard_size ({self.output.shard_size}) must be a multiple of generator.batch_size "
                f"({self.generator.batch_size}); otherwise every shard pads a partial batch"
            )
        return self

    @model_validator(mode="after")
    def _watermark_fits(self) -> "JobSpec":
        from synthgen.watermark import MIN_PIXELS

        g = self.generator
        if self.output.watermark.enabled and g.height and g.width and g.height * g.width < MIN_PIXELS:
            raise ValueError(f"output.watermark needs images of at least 256x256 pixels, not {g.width}x{g.height}; "
                             "turn it off for small images")
        return self

    @property
    def total_images(self) -> int:
        items = self.conditioning.classes or self.conditioning.prompts or []
        return len(items) * self.images_per_condition

    def digest(self) -> str:
        """sha256 of the canonical JSON form: identical specs share a digest."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        for where in ("workers", "devices"):  # where the job runs, not what it makes
            del data["generator"][where]
        if not data["output"]["watermark"]["enabled"]:  # nor does a watermark that is off
            del data["output"]["watermark"]
        if data["output"]["png_encoder"] == "pillow":  # the encoder of jobs from before the field: same identity
            del data["output"]["png_encoder"]
        if data["conditioning"]["init_images"] is None:  # jobs from noise keep the identity they had
            del data["conditioning"]["init_images"]
        for name in RULE_FIELDS:  # a rule that is off does not change the job's identity
            if data["dedup"].get(name) is None:
                del data["dedup"][name]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def parse_spec(data: dict, source: str = "spec") -> JobSpec:
    """Validate a dict as a ``JobSpec``; raise ``SpecError`` naming each bad field."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid job spec ({exc.error_count()} problem(s))"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - {where}: {err['msg']}")
        raise SpecError("\n".join(lines)) from None


def load_spec(path: str | Path, overrides: dict | None = None) -> JobSpec:
    """Read and validate a YAML job spec file, with ``overrides`` merged in first.

    ``overrides`` is a nested mapping (see ``parse_assignments`` and
    ``load_params``); the merged spec is validated as a whole, so an override
    with a bad value is reported like a bad field in the file.
    """
    path = Path(path)
    data = _read_yaml_mapping(path, "a job spec")
    return parse_spec(merge_overrides(data, overrides or {}), source=str(path))


def _read_yaml_mapping(path: Path, what: str) -> dict:
    kind = what.removeprefix("a ")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder; give {what} (a YAML file)")
    if not path.is_file():
        raise SpecError(f"{path}: no such {kind}")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file; {what} is YAML text") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: {what} must be a mapping of fields, got {type(data).__name__}")
    return data


def merge_overrides(data: dict, overrides: dict) -> dict:
    """``data`` with ``overrides`` merged in, recursively for nested mappings (inputs untouched)."""
    merged = dict(data)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overrides(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignments(items: list[str]) -> dict:
    """``["generator.steps=10", "seed=3"]`` -> ``{"generator": {"steps": 10}, "seed": 3}``.

    Values are read as YAML, so numbers, booleans, lists and ``null`` keep
    their types (``--set generator.guidance_scale=3.5``).
    """
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected FIELD.PATH=VALUE, e.g. generator.steps=10")
        try:
            value = load_yaml(raw)
        except yaml.YAMLError as exc:
            raise SpecError(f"--set {item!r}: value is not valid YAML: {exc}") from None
        *parents, leaf = key.strip().split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"--set {item!r}: {part} is set twice, as a value and as a section")
        node[leaf] = value
    return out


def load_params(ref: str) -> dict:
    """Overrides from a section of a params file: ``"params.yaml:demo"`` (DVC's params.yaml)."""
    file, colon, section = ref.partition(":")
    if colon and not section.strip():
        raise SpecError(f"--params {ref!r}: the section name after ':' is empty; give FILE:SECTION (e.g. "
                        "params.yaml:demo) or just FILE to merge the whole file")
    data = _read_yaml_mapping(Path(file), "a params file")
    if not section:
        return data
    if not isinstance(data.get(section), dict):
        raise SpecError(f"{file}: no mapping {section!r} (sections: {', '.join(map(str, data)) or 'none'})")
    return data[section]
