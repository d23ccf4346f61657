"""Check a job's models from their config files, before anything loads or starts.

A generator or embedder that does not exist, a folder that is not a complete
diffusers or CLIP model, class ids beyond the model's classes and prompts
given to a class-conditional model are all visible in the models' JSON
configs. Reading those takes milliseconds; loading the weights (and starting
Prefect and MLflow first) takes seconds to minutes. Weights are not read.

Hub ids are looked up in the local Hugging Face cache; one that is not
cached is an error only offline (``HF_HUB_OFFLINE=1``), since online the
loader downloads it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from synthgen.model_config import config_type_problem, size_rules
from synthgen.model_files import EMBEDDED, fetch_model, is_model_url
from synthgen.runtime import library_version
from synthgen.spec import EmbedderSpec, GeneratorSpec, JobSpec
from synthgen.weights_header import safetensors_problem

# Pipelines that take class ids (see synthgen.generators.CLASS_PIPELINES).
CLASS_PIPELINES = {"ClassConditionalPipeline", "DiTPipeline"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".index.json")


class ModelCheckError(ValueError):
    """A model the job cannot use; the message names the spec field, the path and the fix."""


@dataclass(frozen=True)
class GeneratorInfo:
    """What the configs say about a generator (None where it could not be checked offline)."""

    folder: Path | None
    pipeline_class: str | None
    kind: str | None  # "class" | "text"
    num_classes: int | None
    image_size: tuple[int, int] | None = None  # (height, width) of the images the job makes, where known


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1 or Path(model).exists()


def locate(model: str, field: str, hub_prefixes: tuple[str, ...] = ()) -> Path | None:
    """The local folder holding ``model`` (embedded name, folder, cached hub id, or a URL's folder, fetched
    into the model cache); None: download it online."""
    if model.startswith("embedded:"):
        if model not in EMBEDDED:
            raise ModelCheckError(f"{field}: unknown embedded model {model!r}; known: {', '.join(sorted(EMBEDDED))}")
        return EMBEDDED[model]
    if is_model_url(model):
        try:
            return fetch_model(model)
        except (OSError, ValueError, ImportError) as exc:  # missing folder, no access, unknown protocol
            raise ModelCheckError(f"{field}: {model}: cannot fetch the model folder ({exc})") from None
    if _looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            what = "is a file, not a model folder" if path.is_file() else "does not exist"
            raise ModelCheckError(f"{field}: {model} {what}; give a saved model folder or a hub id")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HFValidationError

    for repo in [model, *(f"{p}/{model}" for p in hub_prefixes if "/" not in model)]:
        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except HFValidationError:
            raise ModelCheckError(f"{field}: {model!r} is neither a folder nor a valid hub id") from None
        except Exception:  # noqa: BLE001 - not in the cache (the error type varies by version)
            continue
    if _offline():
        raise ModelCheckError(f"{field}: {model!r} is not a local folder and not in the Hugging Face cache, and "
                              "HF_HUB_OFFLINE is set; download it first or give a saved model folder")
    return None


def _read_json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelCheckError(f"{field}: {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelCheckError(f"{field}: {path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelCheckError(f"{field}: {path} must hold a JSON object")
    return data


def _has_weights(folder: Path) -> bool:
    return any(f.name.endswith(WEIGHT_SUFFIXES) for f in folder.iterdir() if f.is_file())


def _check_safetensors(folder: Path, field: str) -> None:
    """Every ``*.safetensors`` file in ``folder`` has a sound header (the tensors themselves are not read)."""
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem:
            raise ModelCheckError(f"{field}: {path} is not a valid safetensors file ({problem}); the copy or "
                                  "download is damaged: save or download the model again")


def _check_component(folder: Path, name: str, cls: str, field: str) -> None:
    """One ``model_index.json`` entry: its sub-folder holds the files its kind needs."""
    sub = folder / name
    if not sub.is_dir():
        raise ModelCheckError(f"{field}: {folder} is not a complete diffusers model: model_index.json lists "
                              f"{name!r} ({cls}) but {sub} is missing; save the pipeline with save_pretrained")
    if cls.endswith("Scheduler"):
        needed: tuple[str, ...] = ("scheduler_config.json",)
    elif "Tokenizer" in cls:
        needed = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model")
    elif "FeatureExtractor" in cls or "Processor" in cls:
        needed = ("preprocessor_config.json",)
    else:
        needed = ("config.json",)
        problem = config_type_problem(_read_json(sub / "config.json", field))
        if problem:
            raise ModelCheckError(f"{field}: {sub / 'config.json'}: {problem}")
        if not _has_weights(sub):
            raise ModelCheckError(f"{field}: {sub} has a config but no weights (*.safetensors or *.bin); "
                                  "the model folder is incomplete")
        _check_safetensors(sub, field)
        return
    if not any((sub / n).is_file() for n in needed):
        raise ModelCheckError(f"{field}: {sub} ({cls}) lacks {' or '.join(needed)}; the model folder is incomplete")


def _num_classes(folder: Path, pipeline_class: str, field: str) -> int | None:
    if pipeline_class == "ClassConditionalPipeline":
        n = _read_json(folder / "unet" / "config.json", field).get("num_class_embeds")
        return int(n) - 1 if n else None  # the last embedding is the "no class" token
    if pipeline_class == "DiTPipeline":
        n = _read_json(folder / "transformer" / "config.json", field).get("num_embeds_ada_norm")
        return int(n) if n else None
    return None


def check_generator(spec: GeneratorSpec, kind: str, class_ids: list[int] | None = None,
                    field: str = "generator.model", program: bool = False) -> GeneratorInfo:
    """Check the generator's folder, its kind against the conditioning, and the class ids' range.

    ``program``: the job writes its prompts with a prompt program (so a class job needs a text model).
    """
    folder = locate(spec.model, field)
    if spec.scheduler:
        if not _diffusers_has(spec.scheduler):
            raise ModelCheckError(f"generator.scheduler: diffusers has no scheduler {spec.scheduler!r}")
    if folder is None:
        return GeneratorInfo(None, None, None, None)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelCheckError(f"{field}: {folder} is not a diffusers pipeline folder (no model_index.json); "
                              "save the pipeline with save_pretrained, or give a hub id")
    index = _read_json(index_path, field)
    pipeline_class = str(index.get("_class_name") or "")
    if not pipeline_class:
        raise ModelCheckError(f"{field}: {index_path} names no pipeline class (_class_name)")
    for name, entry in index.items():
        if not name.startswith("_") and isinstance(entry, list) and len(entry) == 2 and entry[0] and entry[1]:
            _check_component(folder, name, str(entry[1]), field)
    _check_pipeline_class(pipeline_class, index, field)
    model_kind = "class" if pipeline_class in CLASS_PIPELINES else "text"
    if model_kind != kind:
        if kind == "text" and program:
            raise ModelCheckError(f"conditioning.prompt_template: {spec.model} is a class-conditional "
                                  f"{pipeline_class}; prompt programs (prompt_template, attributes, a class's "
                                  "prompts) need a text-to-image model")
        if kind == "text":
            raise ModelCheckError(f"conditioning.prompts: {spec.model} is a class-conditional {pipeline_class}; "
                                  "it takes conditioning.classes (ids), not prompts")
        raise ModelCheckError(f"conditioning.classes: {spec.model} is a text-to-image {pipeline_class}; "
                              "give conditioning.prompts instead of class ids")
    n = _num_classes(folder, pipeline_class, field) if kind == "class" else None
    bad = sorted(c for c in class_ids or [] if n is not None and c >= n)
    if bad:
        raise ModelCheckError(f"conditioning.classes: ids {bad} out of range; {spec.model} has {n} classes "
                              f"(ids 0..{n - 1})")
    return GeneratorInfo(folder, pipeline_class, model_kind, n, _check_size(spec, folder, index))


@lru_cache(maxsize=1)
def _diffusers_exports() -> frozenset[str]:
    """The names diffusers' ``__init__`` lists (its lazy import table quotes every public class)."""
    spec = importlib.util.find_spec("diffusers")
    try:
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except OSError:
        source = ""
    return frozenset(re.findall(r'"([A-Za-z_][A-Za-z0-9_]*)"', source))


def _diffusers_has(name: str) -> bool:
    """Whether diffusers has ``name``, without importing it (``import diffusers`` imports torch: ~1-3 s).

    A name its ``__init__`` lists is answered from the source text; any other is confirmed by importing
    diffusers, so an unusual install can only make the check slower, never reject a class it has.
    """
    if name in _diffusers_exports():
        return True
    import diffusers

    return hasattr(diffusers, name)


def _check_pipeline_class(pipeline_class: str, index: dict, field: str) -> None:
    """The pipeline and its diffusers components must be classes this diffusers has."""
    if pipeline_class != "ClassConditionalPipeline" and not _diffusers_has(pipeline_class):
        raise ModelCheckError(f"{field}: model_index.json names pipeline {pipeline_class!r}, which diffusers "
                              f"{library_version('diffusers')} does not have")
    for name, entry in index.items():
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == "diffusers" and entry[1]:
            if not _diffusers_has(str(entry[1])):
                raise ModelCheckError(f"{field}: component {name!r} is a {entry[1]}, which diffusers does not have")


def _check_size(spec: GeneratorSpec, folder: Path, index: dict) -> tuple[int, int] | None:
    """Height and width must be whole latent pixels the denoiser can halve; returns the (height, width) made.

    The multiple is the VAE's downscaling factor, times the UNet's for a ``UNet2DModel`` (see
    ``synthgen.model_config``). None where the configs do not say the default size.
    """
    configs = {name: _read_json(folder / name / "config.json", "generator.model")
               for name in ("unet", "vae") if name in index and (folder / name / "config.json").is_file()}
    rules = size_rules(configs)
    for name in ("height", "width"):
        value = getattr(spec, name)
        if value is not None and value % rules.multiple:
            raise ModelCheckError(f"generator.{name}: {value} is not a multiple of {rules.multiple}, "
                                  f"{rules.why} of {spec.model}")
    if spec.height and spec.width:
        return spec.height, spec.width
    if rules.default is None:
        return None
    return spec.height or rules.default[0], spec.width or rules.default[1]


def check_embedder(spec: EmbedderSpec, field: str = "embedder.model") -> Path | None:
    """Check that the embedder is a complete CLIP-style model folder (sentence-transformers or Hugging Face)."""
    folder = locate(spec.model, field, hub_prefixes=("sentence-transformers",))
    if folder is None:
        return None
    model_dir = folder
    if (folder / "modules.json").is_file():
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            paths = [str(m.get("path", "")) for m in modules if isinstance(m, dict)]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ModelCheckError(f"{field}: {folder / 'modules.json'} is not a list of modules ({exc})") from None
        model_dir = next((folder / p for p in paths if (folder / p / "config.json").is_file()), folder)
    if not (model_dir / "config.json").is_file():
        raise ModelCheckError(f"{field}: {folder} is not a CLIP model folder (no config.json); give a folder "
                              "saved with save_pretrained or SentenceTransformer.save, or a hub id")
    config = _read_json(model_dir / "config.json", field)
    kind = str(config.get("model_type", ""))
    if "clip" not in kind and "siglip" not in kind and "vision_config" not in config:
        raise ModelCheckError(f"{field}: {folder} is a {kind or 'non-CLIP'} model; dedup needs an image-text "
                              "model such as CLIP (e.g. embedded:digits-clip or clip-ViT-B-32)")
    if not _has_weights(model_dir):
        raise ModelCheckError(f"{field}: {model_dir} has a config but no weights (*.safetensors or *.bin)")
    _check_safetensors(model_dir, field)
    return folder


def check_job_models(spec: JobSpec) -> GeneratorInfo:
    """Every model check a job needs, from config files only (call before any service starts)."""
    ids = [c.id for c in spec.conditioning.classes or []]
    info = check_generator(spec.generator, spec.conditioning.kind, ids, program=spec.conditioning.programmed)
    _check_watermark_size(spec, info)
    check_embedder(spec.embedder)
    return info


def _check_watermark_size(spec: JobSpec, info: GeneratorInfo) -> None:
    """A watermark needs 256x256 pixels or more; the spec's validator sees only an explicit height and width."""
    from synthgen.watermark import MIN_PIXELS

    if not spec.output.watermark.enabled or info.image_size is None:
        return
    h, w = info.image_size
    if h * w < MIN_PIXELS:
        raise ModelCheckError(f"output.watermark: {spec.generator.model} makes {w}x{h} images, but the watermark "
                              "needs at least 256x256 pixels; turn it off, or set generator.height and width")
