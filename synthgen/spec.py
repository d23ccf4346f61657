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
from synthgen.prompts import NAME_SLOT, fill, slot_names
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
    prompts: list[str] | None = Field(  # non-empty: checked with the rest of the program (Conditioning)
        None, description="this class's own prompt templates for a text-to-image model (slots: "
        "{name} and the attributes); samples take them in turn, balanced. null: conditioning.prompt_template")

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, v: str) -> str:
        # Exports write each class into a folder of its name: `../x` or `/abs` would write elsewhere.
        problem = component_problem(v)
        if problem:
            raise ValueError(f"class name {v!r} {problem}; it names the class's folder in an export, "
                             "so it must be one file name")
        return v


ATTRIBUTE_PATTERN = r"^[a-z_][a-z0-9_]{0,31}$"


class PromptExpansion(_Strict):
    """What wrote a spec's extra templates (``synthgen.prompt_expansion``): a record, never re-run."""

    model: str = Field(min_length=1, description="the local text-generation model folder, as given")
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    per_template: int = Field(ge=1, le=64, description="continuations asked for per template")
    max_new_tokens: int = Field(ge=1, le=512)
    added: int = Field(ge=0, description="templates (or prompts) it added")


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
    """What to condition on: exactly one of ``classes`` or ``prompts``, and optionally a prompt program.

    A prompt program (``prompt_template``, ``attributes``, or a class's own
    ``prompts``) writes each sample's prompt from a template, with its
    attribute values chosen in a balanced, seed-derived order
    (``synthgen.prompts``). Class jobs with a program need a text-to-image
    model: the class id is the row's label, the prompt is what is drawn.
    """

    classes: list[ClassCondition] | None = None
    prompts: list[str] | None = None
    negative_prompt: str | None = None
    caption_template: str = Field(
        "a photo of a {name}", description="caption for a class, used for CLIP alignment scores"
    )
    prompt_template: str | None = Field(
        None, description="e.g. 'a photo of a {name}, {lighting}': {name} is the class name (or the prompt, in a "
        "prompt job); the other slots are attributes")
    attributes: dict[Annotated[str, Field(pattern=ATTRIBUTE_PATTERN)], list[str]] | None = Field(
        None, description="attribute name -> its values; every template uses every attribute, "
        "and within each class or prompt each value's count differs by at most one")
    prompt_expansion: PromptExpansion | None = Field(
        None, description="written by `synthgen expand-prompts`: which text model wrote the extra templates")
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
            if self.programmed:  # a programmed prompt is the drawn text, so the mapping could not find it
                raise ValueError("init_images.classes maps a prompt job's prompts to real classes, and a prompt "
                                 "program rewrites every prompt; give a class job with the program instead (its "
                                 "classes match real rows by name), or leave init_images.classes out")
        if "{name}" not in self.caption_template:
            raise ValueError("caption_template must contain '{name}'")
        try:  # formatted per sample later, inside the flow: a bad template must fail here instead
            self.caption("x")
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise ValueError(f"caption_template {self.caption_template!r} does not format with just {{name}} "
                             f"({type(exc).__name__}: {exc}); write a literal brace as '{{{{' or '}}}}'") from None
        if self.programmed:
            self._check_program()
        return self

    @property
    def programmed(self) -> bool:
        """Whether prompts are written from templates (a prompt program is on)."""
        return (self.prompt_template is not None or self.attributes is not None
                or any(c.prompts is not None for c in self.classes or []))

    def templates(self) -> list[tuple[str, list[str]]]:
        """Each condition's name (class name, or prompt) and templates, in the conditions' order."""
        if self.classes is not None:
            return [(c.name, c.prompts or ([self.prompt_template] if self.prompt_template else []))
                    for c in self.classes]
        return [(p, [self.prompt_template or p]) for p in self.prompts or []]

    def _check_program(self) -> None:
        attrs = self.attributes or {}
        if self.attributes is not None and not attrs:
            raise ValueError("attributes is empty; give at least one attribute, or leave it out")
        empty = [c.name for c in self.classes or [] if c.prompts is not None and not any(p.strip() for p in c.prompts)]
        blank = [c.name for c in self.classes or [] if c.prompts and any(not p.strip() for p in c.prompts)]
        if empty or blank:
            raise ValueError(f"classes {', '.join(map(repr, empty or blank))}: prompts must be a non-empty list of "
                             "non-empty templates")
        for name, values in attrs.items():
            if name == NAME_SLOT:
                raise ValueError(f"attributes: {NAME_SLOT!r} is the class name's (or prompt's) slot; name the "
                                 "attribute otherwise")
            if not values or any(not v.strip() for v in values):
                raise ValueError(f"attributes.{name}: give a non-empty list of non-empty values")
            if len(set(values)) != len(values):
                raise ValueError(f"attributes.{name}: values must be unique")
        if self.prompt_template is not None and NAME_SLOT not in _slots(self.prompt_template, "prompt_template"):
            raise ValueError("prompt_template must contain '{name}' (the class name, or the prompt in a prompt job)")
        missing = [n for n, ts in self.templates() if not ts]
        if missing:
            raise ValueError(f"classes {', '.join(map(repr, missing))} have no prompts and there is no "
                             "prompt_template; give one, or prompts for every class")
        # A prompt job's own prompts are its templates when there is no prompt_template: {name} means nothing there.
        named = set() if self.prompts is not None and self.prompt_template is None else {NAME_SLOT}
        for cond, templates in self.templates():
            for t in templates:
                slots = set(_slots(t, f"template {t!r}"))
                unknown, unused = sorted(slots - set(attrs) - named), sorted(set(attrs) - slots)
                if unknown:
                    raise ValueError(f"template {t!r} (of {cond!r}) has slots {unknown} that are not attributes; "
                                     f"attributes: {sorted(attrs) or 'none'}")
                if unused:
                    raise ValueError(f"template {t!r} (of {cond!r}) does not use attributes {unused}; every template "
                                     "must use every attribute, so each row's recorded values are in its prompt")
                if not fill(t, {NAME_SLOT: cond, **{a: "x" for a in attrs}}).strip():
                    raise ValueError(f"template {t!r} (of {cond!r}) makes an empty prompt")

    def caption(self, class_name: str) -> str:
        """The text a class-conditioned sample is scored against."""
        return self.caption_template.format(name=class_name)

    @property
    def kind(self) -> Literal["class", "text"]:
        """The kind of model the job needs: class-conditional, or text-to-image (prompts, or a prompt program)."""
        return "class" if self.classes is not None and not self.programmed else "text"


def _slots(template: str, what: str) -> list[str]:
    try:
        return slot_names(template)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


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
    images_per_condition: int | None = Field(None, ge=1, le=10_000_000, description="generate exactly this many "
                                             "of each condition (or give kept_per_condition)")
    kept_per_condition: int | None = Field(
        None, ge=1, le=10_000_000, description="generate until each condition has this many kept rows (after dedup, "
        "guard and quality rules), in deterministic rounds that ask for each condition's shortfall")
    max_per_condition: int | None = Field(
        None, ge=1, le=20_000_000, description="with kept_per_condition: at most this many generated per condition "
        "(default twice kept_per_condition); a condition that reaches it short of its kept count is reported as capped")
    seed: int = Field(0, ge=0, lt=2**63)
    embedder: EmbedderSpec = EmbedderSpec()
    dedup: DedupSpec = DedupSpec()
    output: OutputSpec

    @model_validator(mode="before")
    @classmethod
    def _default_cap(cls, data: object) -> object:
        # The cap is filled in here, so the spec (and the manifest's copy of it) states it.
        if isinstance(data, dict) and data.get("max_per_condition") is None:
            kept = data.get("kept_per_condition")
            if isinstance(kept, int) and not isinstance(kept, bool) and kept >= 1:
                return {**data, "max_per_condition": min(2 * kept, 20_000_000)}
        return data

    @model_validator(mode="after")
    def _one_count(self) -> "JobSpec":
        if (self.images_per_condition is None) == (self.kept_per_condition is None):
            raise ValueError("give exactly one of images_per_condition (a fixed count) or kept_per_condition "
                             "(generate until each condition has that many kept rows)")
        if self.kept_per_condition is None:
            if self.max_per_condition is not None:
                raise ValueError("max_per_condition caps kept_per_condition; with images_per_condition leave it out")
            return self
        if self.max_per_condition < self.kept_per_condition:
            raise ValueError(f"max_per_condition ({self.max_per_condition}) must be at least kept_per_condition "
                             f"({self.kept_per_condition})")
        if self.dedup.keep != "first":
            raise ValueError("kept_per_condition needs dedup.keep: first (keep: quality decides the whole job at "
                             "the end, so kept counts are not known round by round)")
        return self

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
    def per_condition(self) -> int:
        """Samples of each condition in the plan's first round (``images_per_condition`` or ``kept_per_condition``)."""
        return self.images_per_condition or self.kept_per_condition or 0

    @property
    def total_images(self) -> int:
        """Images in the plan's first round: all of them, unless ``kept_per_condition`` extends the plan."""
        items = self.conditioning.classes or self.conditioning.prompts or []
        return len(items) * self.per_condition

    @property
    def size_text(self) -> str:
        """How many images the job makes, in words (for logs and the CLI)."""
        if self.kept_per_condition is None:
            return f"{self.total_images} images"
        return f"{self.kept_per_condition} kept per condition (at most {self.max_per_condition} generated)"

    def digest(self) -> str:
        """sha256 of the canonical JSON form: identical specs share a digest."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json")
        for count in ("images_per_condition", "kept_per_condition", "max_per_condition"):
            if data[count] is None:  # the count not used: a fixed-count job keeps its identity
                del data[count]
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
        cond = data["conditioning"]
        for name in ("prompt_template", "attributes", "prompt_expansion"):  # nor does a prompt program that is off
            if cond[name] is None:
                del cond[name]
        for c in cond["classes"] or []:
            if c["prompts"] is None:
                del c["prompts"]
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
