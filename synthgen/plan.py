"""The deterministic sampling plan: which images a job makes, with which seeds.

Every sample's seed derives from (job seed, condition, index) alone, so the
same spec always asks for the same images in the same order, whatever the
batch size, shard size or number of workers. Shards are contiguous slices of
the plan and are the unit of work, retry and resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from synthgen.prompts import ConditionPrompts, PromptProgram
from synthgen.records import Sample
from synthgen.spec import JobSpec


def derive_seed(job_seed: int, condition_key: str, index: int) -> int:
    """A 63-bit seed from (job seed, condition, index), stable across versions."""
    h = hashlib.sha256(f"{job_seed}|{condition_key}|{index}".encode()).digest()
    return int.from_bytes(h[:8], "big") & (2**63 - 1)


def sample_id_for(job_digest: str, condition_key: str, index: int) -> str:
    """A sample id that is unique per (spec, condition, index) and reproducible."""
    return hashlib.sha256(f"{job_digest}|{condition_key}|{index}".encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Shard:
    """A contiguous slice ``[start, stop)`` of the plan."""

    index: int
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def __len__(self) -> int:
        return self.stop - self.start


def _conditions(spec: JobSpec) -> list[tuple[str, dict]]:
    cond = spec.conditioning
    if cond.classes is not None:
        return [(f"class:{c.id}", {"class_id": c.id, "class_name": c.name}) for c in cond.classes]
    return [(f"prompt:{p}", {"prompt": p, "negative_prompt": cond.negative_prompt}) for p in cond.prompts or []]


def prompt_program(spec: JobSpec) -> PromptProgram | None:
    """The job's prompt program (``synthgen.prompts``), keyed like the plan's conditions; None when off."""
    cond = spec.conditioning
    if not cond.programmed:
        return None
    keys = [key for key, _ in _conditions(spec)]
    by_key = {key: ConditionPrompts(name, tuple(ts)) for key, (name, ts) in zip(keys, cond.templates())}
    attributes = {a: tuple(v) for a, v in (cond.attributes or {}).items()}
    return PromptProgram(spec.seed, by_key, attributes, cond.negative_prompt)


def make_plan(spec: JobSpec, start: int = 0, stop: int | None = None) -> list[Sample]:
    """Samples ``[start, stop)`` of a job in plan order.

    The order is index-major (image 0 of every condition, then image 1...),
    so every shard mixes all conditions and a partial run is still balanced.
    """
    digest = spec.digest()
    conditions = _conditions(spec)
    program = prompt_program(spec)
    stop = spec.total_images if stop is None else min(stop, spec.total_images)
    plan: list[Sample] = []
    for i in range(start, stop):
        index, (key, fields) = divmod(i, len(conditions))[0], conditions[i % len(conditions)]
        plan.append(
            Sample(
                sample_id=sample_id_for(digest, key, index),
                origin="synthetic",
                plan_index=i,
                seed=derive_seed(spec.seed, key, index),
                **{**fields, **(program.choose(key, index) if program else {})},
            )
        )
    return plan


def make_shards(total: int, shard_size: int) -> list[Shard]:
    """Split ``total`` plan entries into shards of at most ``shard_size``."""
    return [
        Shard(i, start, min(start + shard_size, total))
        for i, start in enumerate(range(0, total, shard_size))
    ]
