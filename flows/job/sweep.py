"""A settings sweep's data part: one small probe job per setting, measured against the job's real set.

1. ``plan_sweep`` turns the user's spec and the grid into probe specs, every
   one validated (and the full-size spec of every setting too) before
   anything runs. Each probe is the version of its own scratch dataset,
   ``<output.dataset>-sweep-<key>`` (``key``: from the probe spec's digest),
   never of the user's dataset: a job appends to its dataset's head and
   deduplicates against it, so probes sharing one dataset would drop each
   other's rows (same seeds, close settings: near-duplicates) and one
   probe's version would hold the others'. A sweep run again finds each
   probe committed and reuses it.
2. ``run_probe`` runs one probe through ``run_job`` (a probe committed by an
   earlier sweep is answered from the catalog) and measures its kept rows:
   the version's quality report (precision, recall, coverage, Frechet
   distance, per-class diversity, the linear probe's TSTR / TRTR), class
   agreement (zero-shot with the job's embedder, or the user's classifier)
   and images per second of sampling.

No Prefect, MLflow or CLI here: ``flows/sweep.py`` adds the tracking and
the files.
"""

from __future__ import annotations

import importlib
import io
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from pydantic import ValidationError

from catalog import Catalog
from catalog.errors import CatalogError
from catalog.quality import stored_embeddings, stored_groups, version_quality
from catalog.version import open_version
from flows.job.components import ComponentLoader, load_guard, load_job_embedder
from flows.job.preflight import preflight
from flows.job.run import run_job
from flows.settings import Paths
from synthgen.embedder import Embedder
from synthgen.memorisation import PixelGuard
from synthgen.quality_report import QualityReport
from synthgen.spec import JobSpec, merge_overrides
from synthgen.sweep import Measures, Setting, denoiser_passes, measures, zero_shot_agreement

SCRATCH_SUFFIX = "-sweep"
TIMING_FILE = "sweep-timing.json"  # in a probe version's folder: its sampling speed, for a later sweep reusing it
# Fields a grid may not vary: the sweep sets them (probe size, scratch dataset).
RESERVED = ("images_per_condition", "kept_per_condition", "max_per_condition", "output.dataset")

# A user's classifier: called once with the class names (or prompts), returns a function from
# images to one predicted name per image.
Classifier = Callable[[list[Image.Image]], list[str]]


class SweepError(ValueError):
    """A sweep that cannot start: a bad grid value, a reserved field, a classifier that does not load."""


@dataclass
class Probe:
    """One setting's probe job and the full-size spec it stands for."""

    setting: Setting
    spec: JobSpec  # the probe: per-setting size, scratch dataset
    full: JobSpec  # the user's spec with this setting: what ``chosen.yaml`` holds


@dataclass
class ProbeResult:
    """What one probe made and scored."""

    probe: Probe
    ref: str  # the scratch dataset's version
    reused: bool
    measures: Measures
    report: QualityReport
    sampling_s: float | None


def scratch_dataset(spec: JobSpec, key: str = "") -> str:
    """``<output.dataset>-sweep`` (or ``...-sweep-<key>``), cut to fit a dataset name (64 characters)."""
    tail = SCRATCH_SUFFIX + (f"-{key}" if key else "")
    return spec.output.dataset[: 64 - len(tail)] + tail


def _validated(data: dict, label: str) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        raise SweepError(f"--grid setting {label}: {where}: {e['msg']}") from None


def plan_sweep(spec: JobSpec, settings: list[Setting], per_setting: int) -> list[Probe]:
    """A validated probe per setting, of about ``per_setting`` images (whole classes/prompts)."""
    if per_setting < 1:
        raise SweepError(f"--per-setting must be at least 1, got {per_setting}")
    for key in settings[0].assignments if settings else ():
        if key in RESERVED or key.startswith("output.dataset."):
            raise SweepError(f"--grid {key}: the sweep sets it (--per-setting; probes go to a scratch dataset)")
    if not spec.dedup.real_dataset:
        raise SweepError("the sweep measures against the job's real set: the spec needs dedup.real_dataset")
    conditions = len(spec.conditioning.classes or spec.conditioning.prompts or [])
    base = spec.model_dump(mode="json")
    probes = []
    for s in settings:
        full = _validated(merge_overrides(base, s.overrides()), s.label)
        probe = merge_overrides(full.model_dump(mode="json"), {  # a probe is a fixed size, even for a kept count
            "images_per_condition": max(1, math.ceil(per_setting / conditions)),
            "kept_per_condition": None, "max_per_condition": None,
            "output": {"dataset": scratch_dataset(spec)}})
        key = _validated(probe, s.label).digest()[:10]
        probe["output"]["dataset"] = scratch_dataset(spec, key)
        probes.append(Probe(s, _validated(probe, s.label), full))
    return probes


def check_sweep(probes: list[Probe], catalog: Catalog) -> None:
    """The catalog references and model configs of every probe, before anything loads."""
    for p in probes:
        preflight(p.spec, catalog)
        scratch = p.spec.output.dataset
        if catalog.exists(scratch) and catalog.info(scratch).get("restricted"):
            raise CatalogError(f"{scratch}: a sweep's scratch dataset is restricted; remove it or sweep another job")


def load_classifier(entry: str, names: list[str]) -> Classifier:
    """The user's classifier from ``module:function``; ``function(names)`` returns images -> names.

    The module is imported from the current folder first (as ``python -m``
    would), then from the installed packages.
    """
    module_name, sep, func_name = entry.partition(":")
    if not sep or not module_name or not func_name:
        raise SweepError(f"--classifier {entry!r}: expected MODULE:FUNCTION, e.g. my_models.digits:classifier")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module: any import error is theirs to see
        raise SweepError(f"--classifier {entry!r}: cannot import {module_name}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise SweepError(f"--classifier {entry!r}: {module_name} has no function {func_name}")
    return factory(names)


def class_names(spec: JobSpec) -> list[str]:
    """What a classifier tells apart: the class names, else the prompts."""
    c = spec.conditioning
    return [x.name for x in c.classes] if c.classes else list(c.prompts or [])


def agreement(report_ref: str, spec: JobSpec, catalog: Catalog, embed_texts, classifier: Classifier | None) -> float | None:
    """Share of kept rows classified as their own class/prompt: the user's classifier, else zero-shot."""
    v = open_version(catalog, report_ref)
    names = class_names(spec)
    if classifier is not None:
        t = v.table(["image", "label_name", "prompt"])
        truth = [n if n is not None else p for n, p in zip(t["label_name"].to_pylist(), t["prompt"].to_pylist())]
        images = [Image.open(io.BytesIO(cell["bytes"])) for cell in t["image"].to_pylist()]
        if not images:
            return None
        pred = list(classifier(images))
        if len(pred) != len(images):
            raise SweepError(f"--classifier returned {len(pred)} names for {len(images)} images")
        return float(np.mean([p == g for p, g in zip(pred, truth)]))
    groups, _ = stored_groups(v, "synthetic")
    emb = stored_embeddings(v, np.arange(len(groups)), "synthetic")
    captions = [spec.conditioning.caption(n) for n in names] if spec.conditioning.classes else names
    return zero_shot_agreement(emb, groups, embed_texts(captions), names)


class ProbeLoader(ComponentLoader):
    """A probe's components: its own generator; the embedder and the pixel guard shared through ``shared``
    by every probe whose spec sections they come from agree (a grid over sampler settings loads them once).
    """

    def __init__(self, spec: JobSpec, catalog_root: str, shared: dict | None = None, cache: str | None = None):
        super().__init__(spec, catalog_root, cache)
        self.shared = {} if shared is None else shared  # a worker process (unpickled) shares nothing

    def _shared(self, key: tuple, load):
        if key not in self.shared:
            self.shared[key] = load()
        return self.shared[key]

    def embedder(self) -> Embedder:
        key = ("embedder", self.spec.embedder.model_dump_json())
        return self._once("embedder", lambda: self._shared(key, lambda: load_job_embedder(self.spec)))

    def guard(self) -> PixelGuard | None:
        key = ("guard", self.spec.dedup.model_dump_json())  # the real set's head is fixed for the sweep
        return self._once("guard", lambda: self._shared(key, lambda: load_guard(self.spec, self.catalog())))


def run_probe(probe: Probe, paths: Paths, catalog: Catalog, classifier: Classifier | None = None,
              shared: dict | None = None) -> ProbeResult:
    """Run (or reuse) one probe and measure it against the job's real set.

    ``shared``: models kept between the probes of one sweep (see ``ProbeLoader``).
    """
    setup = ProbeLoader(probe.spec, str(paths.catalog), shared, str(paths.cache))
    result = run_job(probe.spec, paths=paths, catalog=catalog, setup=setup)
    ref = f"{result.dataset}@{result.version}"
    timing = catalog.version_dir(result.dataset, result.version) / TIMING_FILE
    fresh = [r for r in result.shards if not r.reused]
    if fresh:
        sampling_s = sum(r.sampling_s for r in fresh)
        generated = sum(r.rows for r in fresh)
        tmp = timing.with_name(f".tmp-{timing.name}")
        tmp.write_text(json.dumps({"generated": generated, "sampling_s": sampling_s}))
        tmp.replace(timing)
    elif timing.is_file():  # made by an earlier sweep: its speed then
        t = json.loads(timing.read_text())
        generated, sampling_s = t["generated"], t["sampling_s"]
    else:
        generated, sampling_s = 0, None
    report = version_quality(catalog, ref)
    agree = agreement(ref, probe.spec, catalog, lambda texts: setup.embedder().embed_texts(texts), classifier)
    ips = generated / sampling_s if sampling_s else None
    g = probe.spec.generator
    m = measures(report.overall, report.groups, report.utility, agree, ips, denoiser_passes(g.steps, g.guidance_scale))
    return ProbeResult(probe, ref, result.reused, m, report, sampling_s)
