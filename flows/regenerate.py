"""Regenerate samples from their provenance rows alone and compare pixel hashes.

For each chosen row: load the recorded model, check its weights hash first,
rebuild the exact scheduler from the stored config, and sample with the
stored seed, conditioning, steps, guidance and batch size. A mismatch is
reported with the provenance fields that differ from this environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import duckdb

from catalog import Catalog, open_version
from synthgen import accel
from synthgen.generators import Generator, load_generator
from synthgen.imaging import array_to_pil, pixel_sha256
from synthgen.records import Sample
from synthgen.runtime import code_commit, library_version, set_threads
from synthgen.spec import GeneratorSpec

_CONFIG_COLS = ["model_id", "model_weights_sha256", "scheduler", "scheduler_config", "num_inference_steps",
                "guidance_scale", "batch_size", "dtype", "device", "width", "height", "generator_options"]


@dataclass
class RegenerationResult:
    checked: int = 0
    matched: int = 0
    mismatches: list[str] = field(default_factory=list)


def _environment_diff(row: dict) -> str:
    here = {"torch_version": library_version("torch"), "diffusers_version": library_version("diffusers"),
            "code_commit": code_commit()}
    diffs = [f"{k}: recorded {row[k]!r}, now {v!r}" for k, v in here.items() if row.get(k) != v]
    return "; ".join(diffs) or "same library versions and code commit"


def _generator_for(row: dict) -> Generator:
    kind = "class" if row["label"] is not None else "text"
    spec = GeneratorSpec(
        model=row["model_id"], steps=row["num_inference_steps"], guidance_scale=row["guidance_scale"],
        batch_size=row["batch_size"], dtype=row["dtype"], device=row["device"],
        height=row["height"] if kind == "text" else None, width=row["width"] if kind == "text" else None,
        **accel.spec_fields(row.get("generator_options")),  # the same compile/layout/attention settings
    )
    gen = load_generator(spec, kind)
    import diffusers

    sched_cls = getattr(diffusers, row["scheduler"])
    gen.pipe.scheduler = sched_cls.from_config(json.loads(row["scheduler_config"]))
    return gen


def regenerate_sample_check(cat: Catalog, ref: str, n: int, seed: int = 0) -> RegenerationResult:
    """Regenerate ``n`` synthetic rows of a version (chosen by a seeded hash) and compare."""
    set_threads(1)
    version = open_version(cat, ref)
    cols = ["sample_id", "seed", "label", "label_name", "prompt", "negative_prompt", "image_sha256",
            "torch_version", "diffusers_version", "code_commit", *_CONFIG_COLS]
    synthetic_rows = version.table(cols, status="all", origin="synthetic")  # noqa: F841 - read by DuckDB below
    rows = duckdb.sql(
        f"SELECT * FROM synthetic_rows ORDER BY hash(sample_id || '{int(seed)}') LIMIT {int(n)}"
    ).to_arrow_table().to_pylist()
    result = RegenerationResult()
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[c] for c in _CONFIG_COLS), []).append(row)
    for group in groups.values():
        gen = _generator_for(group[0])
        if gen.weights_sha256 != group[0]["model_weights_sha256"]:
            result.checked += len(group)
            result.mismatches += [
                f"{r['sample_id']}: model_weights_sha256 recorded {r['model_weights_sha256'][:16]}..., "
                f"{r['model_id']} now has {gen.weights_sha256[:16]}..." for r in group
            ]
            continue
        for row in group:
            sample = Sample(row["sample_id"], "synthetic", seed=row["seed"], class_id=row["label"],
                            class_name=row["label_name"], prompt=row["prompt"], negative_prompt=row["negative_prompt"])
            sha = pixel_sha256(array_to_pil(gen.generate([sample])[0]))
            result.checked += 1
            if sha == row["image_sha256"]:
                result.matched += 1
            else:
                result.mismatches.append(f"{row['sample_id']}: image hash differs ({_environment_diff(row)})")
    return result
