"""Regenerate samples from their provenance rows alone and compare pixel hashes.

The chosen rows are grouped by their recorded settings (model, weights hash,
scheduler and its config, steps, guidance, batch size, dtype, device, size).
Each group loads its model once, checks the weights hash first, rebuilds the
exact scheduler from the stored config and samples its rows in batches of
the recorded batch size, padded like the original run. A sample's pixels do
not depend on its batch company (per-sample generators, fixed batch size),
so this gives the same bytes as regenerating each row alone, at about
1/batch_size of the cost.

Every mismatch names the fields that differ: the image hash (recorded,
regenerated, and what the stored image itself hashes to), the seed and
sample id against the ones the job's plan derives, the weights hash, and
the library versions and code commit that changed since.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import duckdb
import numpy as np

from catalog import Catalog, open_version
from catalog.manifest import Manifest
from synthgen import accel
from synthgen.generators import Generator, load_generator
from synthgen.imaging import array_to_pil, decode, pixel_sha256
from synthgen.plan import make_plan
from synthgen.records import Sample
from synthgen.runtime import code_commit, library_version, set_threads
from synthgen.spec import GeneratorSpec, JobSpec

_CONFIG_COLS = ["model_id", "model_weights_sha256", "scheduler", "scheduler_config", "num_inference_steps",
                "guidance_scale", "batch_size", "dtype", "device", "width", "height", "generator_options",
                "init_dataset", "init_version", "init_strength"]
ROW_COLUMNS = ["sample_id", "seed", "label", "label_name", "prompt", "negative_prompt", "image_sha256", "plan_index",
             "init_image_id", "job_digest", "torch_version", "diffusers_version", "code_commit", "watermark",
             "watermark_method", *_CONFIG_COLS]


@dataclass
class Mismatch:
    """One regenerated row that does not match: field -> (recorded, found)."""

    sample_id: str
    fields: dict[str, tuple[object, object]]
    environment: str = ""

    def __str__(self) -> str:
        parts = [f"{k} recorded {_short(a)}, found {_short(b)}" for k, (a, b) in self.fields.items()]
        return f"{self.sample_id}: " + "; ".join(parts) + (f" ({self.environment})" if self.environment else "")


@dataclass
class GroupResult:
    """The rows of one recorded setting, regenerated together."""

    settings: dict
    checked: int = 0
    matched: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def differing_fields(self) -> dict[str, int]:
        """Field name -> how many of the group's rows differ in it."""
        out: dict[str, int] = {}
        for m in self.mismatches:
            for k in m.fields:
                out[k] = out.get(k, 0) + 1
        return out

    def label(self) -> str:
        s = self.settings
        return (f"{s['model_id']} {s['scheduler']} steps={s['num_inference_steps']} "
                f"guidance={s['guidance_scale']} batch={s['batch_size']} {s['dtype']}/{s['device']}")


@dataclass
class RegenerationResult:
    groups: list[GroupResult] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def checked(self) -> int:
        return sum(g.checked for g in self.groups)

    @property
    def matched(self) -> int:
        return sum(g.matched for g in self.groups)

    @property
    def mismatches(self) -> list[Mismatch]:
        return [m for g in self.groups for m in g.mismatches]

    @property
    def images_per_s(self) -> float:
        return self.checked / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:20] + "...'"


def _environment_diff(row: dict) -> str:
    here = {"torch_version": library_version("torch"), "diffusers_version": library_version("diffusers"),
            "code_commit": code_commit()}
    diffs = [f"{k}: recorded {row[k]!r}, now {v!r}" for k, v in here.items() if row.get(k) != v]
    return "; ".join(diffs) or "same library versions and code commit"


def generator_for(row: dict) -> Generator:
    # A labelled row with a prompt came from a prompt program: a text-to-image model drew its prompt.
    kind = "class" if row["label"] is not None and row["prompt"] is None else "text"
    spec = GeneratorSpec(
        model=row["model_id"], steps=row["num_inference_steps"], guidance_scale=row["guidance_scale"],
        batch_size=row["batch_size"], dtype=row["dtype"], device=row["device"],
        height=row["height"], width=row["width"],  # class models sample other sizes too (the digits UNet at 256 px)
        **accel.spec_fields(row.get("generator_options")),  # the same compile/layout/attention settings
    )
    gen = load_generator(spec, kind, img2img=row.get("init_dataset") is not None)
    import diffusers

    sched_cls = getattr(diffusers, row["scheduler"])
    gen.pipe.scheduler = sched_cls.from_config(json.loads(row["scheduler_config"]))
    if gen.img2img is not None:  # a text model's image-to-image pipeline samples guided rows: same scheduler
        gen.img2img.scheduler = gen.pipe.scheduler
    return gen


def regenerate_hashes(gen: Generator, samples: list[Sample], marks: list[str | None] | None = None,
                      init: list[np.ndarray] | None = None, strength: float = 1.0) -> list[str]:
    """Pixel hashes of ``samples`` regenerated in batches of the generator's (padded) batch size.

    ``marks``: each sample's recorded ``watermark_method`` (``method:strength``, or None); a marked
    row's payload is re-applied the way the watermark stage did, so its pixels hash the same.
    ``init``: each sample's recorded init image (real-image guidance), started from at ``strength``.
    """
    from synthgen import watermark

    out: list[str] = []
    marks = marks or [None] * len(samples)
    for start in range(0, len(samples), gen.batch_size):
        batch = samples[start : start + gen.batch_size]
        pixels = gen.generate(batch) if init is None else \
            gen.generate(batch, init[start : start + gen.batch_size], strength)
        for s, mark, a in zip(batch, marks[start : start + gen.batch_size], pixels):
            if mark:
                method, strength = mark.rsplit(":", 1)
                a = watermark.apply(a, watermark.payload(s.sample_id), method, int(strength))
            out.append(pixel_sha256(array_to_pil(a)))
    return out


def _planned(manifests: list[Manifest]) -> dict[str, JobSpec]:
    """Job digest -> its spec, for the jobs recorded in the dataset's manifests."""
    specs: dict[str, JobSpec] = {}
    for m in manifests:
        if m.job and m.job_digest and m.job_digest not in specs:
            try:
                spec = JobSpec.model_validate(m.job)
            except ValueError:  # a spec from an older schema: its seeds are not re-derived
                continue
            if spec.digest() == m.job_digest:
                specs[m.job_digest] = spec
    return specs


def _plan_fields(row: dict, specs: dict[str, JobSpec]) -> dict[str, tuple[object, object]]:
    """Seed and sample id of a row against what its job's plan derives at its plan index."""
    spec = specs.get(row["job_digest"])
    i = row["plan_index"]
    if spec is None or i is None or not 0 <= i < spec.total_images:
        return {}
    planned = make_plan(spec, i, i + 1)[0]
    return {k: (row[k], want) for k, want in (("seed", planned.seed), ("sample_id", planned.sample_id),
                                              ("prompt", planned.prompt)) if row[k] != want}


def _init_images(cat: Catalog, rows: list[dict]) -> list[np.ndarray] | None:
    """The recorded init images of a group's rows (one real dataset version), as the generate stage read them."""
    first = rows[0]
    if first["init_dataset"] is None:
        return None
    real = open_version(cat, f"{first['init_dataset']}@{first['init_version']}", allow_restricted=True)
    data = real.images([r["init_image_id"] for r in rows])  # only hashes leave regenerate_sample_check
    arrays = [np.asarray(decode(data[r["init_image_id"]])) for r in rows]
    return [a[..., None] if a.ndim == 2 else a for a in arrays]


def _check_group(gen: Generator, rows: list[dict], stored: dict[str, bytes], specs: dict[str, JobSpec],
                 result: GroupResult, init: list[np.ndarray] | None = None) -> None:
    samples = [Sample(r["sample_id"], "synthetic", seed=r["seed"], class_id=r["label"], class_name=r["label_name"],
                      prompt=r["prompt"], negative_prompt=r["negative_prompt"]) for r in rows]
    marks = [r["watermark_method"] if r["watermark"] else None for r in rows]
    strength = rows[0]["init_strength"] or 1.0
    for row, sha in zip(rows, regenerate_hashes(gen, samples, marks, init, strength)):
        result.checked += 1
        fields = _plan_fields(row, specs)
        if sha != row["image_sha256"]:
            fields["image_sha256"] = (row["image_sha256"], sha)
            data = stored.get(row["sample_id"])
            stored_sha = pixel_sha256(decode(data)) if data is not None else None
            if stored_sha != row["image_sha256"]:
                fields["stored image pixel sha256"] = (row["image_sha256"], stored_sha)
        if fields:
            env = _environment_diff(row) if "image_sha256" in fields else ""
            result.mismatches.append(Mismatch(row["sample_id"], fields, env))
        else:
            result.matched += 1


def regenerate_sample_check(cat: Catalog, ref: str, n: int, seed: int = 0) -> RegenerationResult:
    """Regenerate ``n`` synthetic rows of a version (chosen by a seeded hash) and compare.

    Reads only provenance columns and the chosen rows' images; nothing is
    handed out but hashes, so a restricted dataset is checked too.
    """
    t0 = time.perf_counter()
    set_threads(1)
    version = open_version(cat, ref, allow_restricted=True)  # only hashes and field names leave this function
    synthetic_rows = version.table(ROW_COLUMNS, status="all", origin="synthetic")  # noqa: F841 - read by DuckDB below
    rows = duckdb.sql(
        f"SELECT * FROM synthetic_rows ORDER BY hash(sample_id || '{int(seed)}') LIMIT {int(n)}"
    ).to_arrow_table().to_pylist()
    stored = version.images([r["sample_id"] for r in rows])
    specs = _planned(cat.versions(version.name))
    result = RegenerationResult()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[c] for c in _CONFIG_COLS), []).append(row)
    for group in groups.values():
        settings = {c: group[0][c] for c in _CONFIG_COLS}
        gres = GroupResult(settings)
        result.groups.append(gres)
        gen = generator_for(group[0])
        if gen.weights_sha256 != settings["model_weights_sha256"]:
            gres.checked += len(group)
            gres.mismatches += [Mismatch(r["sample_id"], {"model_weights_sha256": (
                settings["model_weights_sha256"], gen.weights_sha256)}) for r in group]
            continue
        group.sort(key=lambda r: (r["plan_index"] is None, r["plan_index"], r["sample_id"]))
        _check_group(gen, group, stored, specs, gres, _init_images(cat, group))
    result.elapsed_s = time.perf_counter() - t0
    return result
