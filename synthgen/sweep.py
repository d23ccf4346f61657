"""A settings sweep's pure parts: the grid, each setting's measures, and the rule that picks one.

- ``parse_grid``: ``["generator.guidance_scale=1,1.5,2", "generator.steps=5,10"]``
  -> every combination as nested overrides (values read as YAML), in grid order.
- ``Measures``: what one setting scored against the real set (class
  agreement, precision, recall, coverage, Frechet distance, per-class
  diversity, the linear probe's TSTR / TRTR, images per second), built by
  ``measures`` from ``synthgen.quality`` and ``synthgen.utility`` scores.
- ``Rule`` and ``choose``: thresholds first, then the best of one measure.

No catalog, MLflow or CLI here: ``flows/job/sweep.py`` runs the probes,
``flows/sweep.py`` logs and writes them, ``bench/bench_quality_sweep.py``
scores in-memory sets with the same functions.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synthgen.quality import SetScores
from synthgen.strict_yaml import load_yaml
from synthgen.utility import UtilityScores


class GridError(ValueError):
    """A ``--grid`` item that is not FIELD.PATH=V1,V2,..."""


@dataclass
class Setting:
    """One point of the grid: its overrides (nested, like ``--set``) and a short label."""

    index: int
    assignments: dict[str, object]  # dotted key -> value, in grid order
    label: str

    def overrides(self) -> dict:
        """``{"generator": {"steps": 5}}`` from ``{"generator.steps": 5}``."""
        out: dict = {}
        for key, value in self.assignments.items():
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out


def parse_grid(items: list[str]) -> list[Setting]:
    """Every combination of the ``--grid`` items' values, the first item varying slowest."""
    if not items:
        raise GridError("give at least one --grid FIELD.PATH=V1,V2,... (e.g. generator.guidance_scale=1,1.5,2)")
    axes: list[tuple[str, list]] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise GridError(f"--grid {item!r}: expected FIELD.PATH=V1,V2,... e.g. generator.steps=5,10")
        if any(not part for part in key.split(".")):
            raise GridError(f"--grid {item!r}: {key!r} is not a dotted field path")
        if any(key == k or key.startswith(k + ".") or k.startswith(key + ".") for k, _ in axes):
            raise GridError(f"--grid {item!r}: {key} is already on the grid")
        values = []
        for text in raw.split(","):
            try:
                values.append(load_yaml(text.strip()) if text.strip() else None)
            except yaml.YAMLError:
                raise GridError(f"--grid {item!r}: value {text!r} is not valid YAML") from None
            if values[-1] is None:
                raise GridError(f"--grid {item!r}: an empty value (two commas, or a trailing one)")
        if len(set(map(repr, values))) != len(values):
            raise GridError(f"--grid {item!r}: a value is listed twice")
        axes.append((key, values))
    settings = []
    for i, combo in enumerate(itertools.product(*(values for _, values in axes))):
        assignments = {key: value for (key, _), value in zip(axes, combo)}
        label = ", ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in assignments.items())
        settings.append(Setting(i, assignments, label))
    return settings


# Measures a rule may use, and whether larger is better.
HIGHER_IS_BETTER = {
    "agreement": True, "precision": True, "recall": True, "coverage": True, "frechet": False,
    "diversity": True, "diversity_min": True, "tstr_ratio": True, "tstr": True, "images_per_s": True,
    "denoiser_passes": False,
}


@dataclass
class Measures:
    """One setting's scores against the real set (None: not computable, e.g. too few rows)."""

    rows: int  # kept rows scored
    agreement: float | None  # share of kept rows the classifier puts in their requested class
    precision: float | None
    recall: float | None
    coverage: float | None
    frechet: float | None  # Frechet distance in the embedder's space
    diversity: float | None  # mean over classes/prompts of the nearest-neighbour diversity ratio
    diversity_min: float | None  # its worst class or prompt
    tstr_ratio: float | None  # linear probe: train on synthetic / train on real, tested on held-out real
    tstr: float | None
    images_per_s: float | None  # generated images over the seconds the sampler ran
    denoiser_passes: int | None = None  # per image: a cost that does not depend on the machine (see ``denoiser_passes``)

    def to_dict(self) -> dict:
        return asdict(self)


def denoiser_passes(steps: int, guidance_scale: float) -> int:
    """Denoiser evaluations per image: ``steps``, twice over with classifier-free guidance (scale > 1).

    The sampling cost in units every machine shares (diffusers and the
    embedded pipeline skip the unconditional pass at guidance <= 1), so a
    budget can be a threshold that a loaded machine's timing cannot move.
    """
    return steps * (2 if guidance_scale > 1 else 1)


def zero_shot_agreement(embeddings: np.ndarray, groups: list[str], text_embeddings: np.ndarray,
                        names: list[str]) -> float | None:
    """Share of rows whose nearest class text (cosine; unit vectors) is their own class/prompt."""
    if not len(groups):
        return None
    pred = np.array(names, object)[np.argmax(embeddings @ text_embeddings.T, 1)]
    return float((pred == np.array(groups, object)).mean())


def measures(overall: SetScores, groups: list[SetScores], utility: UtilityScores | None, agreement: float | None,
             images_per_s: float | None, passes: int | None = None) -> Measures:
    """A setting's ``Measures`` from its quality scores (``synthgen.quality.score_groups`` or a report)."""
    div = [g.diversity_ratio for g in groups if g.diversity_ratio is not None]
    return Measures(
        rows=overall.synthetic_rows, agreement=agreement, precision=overall.precision, recall=overall.recall,
        coverage=overall.coverage, frechet=overall.frechet_distance,
        diversity=float(np.mean(div)) if div else None, diversity_min=float(np.min(div)) if div else None,
        tstr_ratio=utility.ratio if utility else None, tstr=utility.tstr if utility else None,
        images_per_s=images_per_s, denoiser_passes=passes)


class Rule(BaseModel):
    """How a setting is picked: every threshold met, then the best of one measure.

    Defaults: the project's quality target (class agreement >= 0.98,
    coverage >= 0.8, per-class diversity ratio >= 0.8), then the highest
    linear-probe TSTR / TRTR ratio; ties go to the earlier setting on the grid.
    """

    model_config = ConfigDict(extra="forbid")

    minimum: dict[str, float] = Field(default_factory=lambda: {"agreement": 0.98, "coverage": 0.8, "diversity": 0.8})
    maximum: dict[str, float] = Field(default_factory=dict)
    best: str = "tstr_ratio"

    @field_validator("minimum", "maximum")
    @classmethod
    def _known_measures(cls, v: dict[str, float]) -> dict[str, float]:
        for name in v:
            if name not in HIGHER_IS_BETTER:
                raise ValueError(f"unknown measure {name!r}; use one of {', '.join(HIGHER_IS_BETTER)}")
        return v

    @field_validator("best")
    @classmethod
    def _known_best(cls, v: str) -> str:
        if v not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown measure {v!r}; use one of {', '.join(HIGHER_IS_BETTER)}")
        return v

    def describe(self) -> str:
        conds = [f"{k} >= {v:g}" for k, v in self.minimum.items()] + [f"{k} <= {v:g}" for k, v in self.maximum.items()]
        way = "highest" if HIGHER_IS_BETTER[self.best] else "lowest"
        return f"{', '.join(conds) or 'no thresholds'}; then the {way} {self.best}"

    def misses(self, m: Measures) -> list[str]:
        """The thresholds ``m`` does not meet (a missing value meets none)."""
        out = []
        for name, bound in self.minimum.items():
            value = getattr(m, name)
            if value is None or value < bound:
                out.append(f"{name} < {bound:g}")
        for name, bound in self.maximum.items():
            value = getattr(m, name)
            if value is None or value > bound:
                out.append(f"{name} > {bound:g}")
        return out


def choose(all_measures: list[Measures], rule: Rule) -> int | None:
    """Index of the chosen setting: among those meeting every threshold, the best ``rule.best``; None if none."""
    sign = 1.0 if HIGHER_IS_BETTER[rule.best] else -1.0
    best, best_value = None, None
    for i, m in enumerate(all_measures):
        value = getattr(m, rule.best)
        if rule.misses(m) or value is None:
            continue
        if best_value is None or sign * value > sign * best_value:  # strict: ties keep the earlier setting
            best, best_value = i, value
    return best
