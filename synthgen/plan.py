"""The deterministic sampling plan: which images a job makes, with which seeds.

Every sample's seed derives from (job seed, condition, index) alone, so the
same spec always asks for the same images in the same order, whatever the
batch size, shard size or number of workers. Shards are contiguous slices of
the plan and are the unit of work, retry and resume.

The plan comes in rounds. A job with ``images_per_condition`` has one. A job
with ``kept_per_condition: N`` starts with N of each condition; once a round
is decided, the next asks each condition that is still short for exactly its
shortfall (never more than its cap ``max_per_condition`` allows), continuing
its index sequence (``next_round``). Asking for the shortfall means a
condition can never pass N kept rows, and the next round is a pure function
of the decisions before it, so a rerun, a resume and any number of workers
extend the plan the same way.
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
class Round:
    """One block of the plan: for each ``(condition position, first index, count)`` in ``asks``, ``count``
    samples of that condition from its index ``first`` on, in index-major order; plan indexes from ``start``."""

    number: int
    start: int
    asks: tuple[tuple[int, int, int], ...]

    def __len__(self) -> int:
        return sum(n for _, _, n in self.asks)

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def entries(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """(condition position, index) of the round's entries at offsets ``[lo, hi)``.

        Index-major: the j-th new sample of every condition that asked for
        more than j, then the (j+1)-th. Walks the levels of distinct counts,
        so a slice costs its own length (plus the conditions), not the round's.
        """
        out: list[tuple[int, int]] = []
        offset, depth = 0, 0
        for level in sorted({n for _, _, n in self.asks}):
            active = [a for a in self.asks if a[2] >= level]
            size = (level - depth) * len(active)
            for k in range(max(lo, offset), min(hi, offset + size)):
                j, p = divmod(k - offset, len(active))
                out.append((active[p][0], active[p][1] + depth + j))
            offset, depth = offset + size, level
        return out


@dataclass(frozen=True, slots=True)
class Shard:
    """A contiguous slice ``[start, stop)`` of the plan, inside one round (None: the job's first round)."""

    index: int
    start: int
    stop: int
    round: Round | None = None

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def __len__(self) -> int:
        return self.stop - self.start


def conditions(spec: JobSpec) -> list[tuple[str, dict]]:
    """Each condition's key (which seeds and sample ids derive from) and the sample fields it sets."""
    cond = spec.conditioning
    if cond.classes is not None:
        return [(f"class:{c.id}", {"class_id": c.id, "class_name": c.name}) for c in cond.classes]
    return [(f"prompt:{p}", {"prompt": p, "negative_prompt": cond.negative_prompt}) for p in cond.prompts or []]


def prompt_program(spec: JobSpec) -> PromptProgram | None:
    """The job's prompt program (``synthgen.prompts``), keyed like the plan's conditions; None when off."""
    cond = spec.conditioning
    if not cond.programmed:
        return None
    keys = [key for key, _ in conditions(spec)]
    by_key = {key: ConditionPrompts(name, tuple(ts)) for key, (name, ts) in zip(keys, cond.templates())}
    attributes = {a: tuple(v) for a, v in (cond.attributes or {}).items()}
    return PromptProgram(spec.seed, by_key, attributes, cond.negative_prompt)


def first_round(spec: JobSpec) -> Round:
    """The plan's first round: ``images_per_condition`` (or ``kept_per_condition``) of every condition."""
    n = spec.per_condition
    return Round(0, 0, tuple((c, 0, n) for c in range(len(conditions(spec)))))


def next_round(spec: JobSpec, last: Round, generated: list[int], kept: list[int]) -> Round | None:
    """The round after ``last``, from each condition's samples generated and kept so far (by position).

    Only ``kept_per_condition`` jobs have one: each condition still short of
    N kept rows and under its cap asks for ``min(shortfall, cap - generated)``
    more, from its next index. None when every condition has N or hit its cap.
    """
    target, cap = spec.kept_per_condition, spec.max_per_condition
    if target is None or cap is None:
        return None
    asks = tuple((c, g, min(target - k, cap - g)) for c, (g, k) in enumerate(zip(generated, kept))
                 if k < target and g < cap)
    return Round(last.number + 1, last.stop, asks) if asks else None


def round_samples(spec: JobSpec, rnd: Round, start: int, stop: int) -> list[Sample]:
    """Samples at plan indexes ``[start, stop)`` of round ``rnd``, in plan order."""
    digest, conds, program = spec.digest(), conditions(spec), prompt_program(spec)
    start, stop = max(start, rnd.start), min(stop, rnd.stop)
    plan: list[Sample] = []
    for i, (c, index) in enumerate(rnd.entries(start - rnd.start, stop - rnd.start), start):
        key, fields = conds[c]
        plan.append(Sample(sample_id=sample_id_for(digest, key, index), origin="synthetic", plan_index=i,
                           seed=derive_seed(spec.seed, key, index),
                           **{**fields, **(program.choose(key, index) if program else {})}))
    return plan


def make_plan(spec: JobSpec, start: int = 0, stop: int | None = None) -> list[Sample]:
    """Samples ``[start, stop)`` of a job's first round in plan order.

    The order is index-major (image 0 of every condition, then image 1...),
    so every shard mixes all conditions and a partial run is still balanced.
    """
    rnd = first_round(spec)
    return round_samples(spec, rnd, start, rnd.stop if stop is None else stop)


def shard_plan(spec: JobSpec, shard: Shard) -> list[Sample]:
    """The samples of one shard, in plan order (from its round)."""
    return round_samples(spec, shard.round or first_round(spec), shard.start, shard.stop)


def make_shards(total: int, shard_size: int) -> list[Shard]:
    """Split ``total`` plan entries into shards of at most ``shard_size``."""
    return [
        Shard(i, start, min(start + shard_size, total))
        for i, start in enumerate(range(0, total, shard_size))
    ]


def round_shards(rnd: Round, shard_size: int, first_index: int) -> list[Shard]:
    """Round ``rnd`` cut into shards of at most ``shard_size``, numbered from ``first_index``.

    A round starts a new shard, so shard boundaries depend only on the rounds.
    """
    return [Shard(first_index + k, start, min(start + shard_size, rnd.stop), rnd)
            for k, start in enumerate(range(rnd.start, rnd.stop, shard_size))]


def shard_record(shard: Shard) -> dict:
    """A shard as plain JSON (what a work pool's flow run is handed), with its round."""
    rnd = shard.round
    return {"index": shard.index, "start": shard.start, "stop": shard.stop,
            "round": None if rnd is None else {"number": rnd.number, "start": rnd.start, "asks": [list(a) for a in rnd.asks]}}


def shard_from_record(record: dict) -> Shard:
    """The shard ``shard_record`` wrote."""
    r = record.get("round")
    rnd = None if r is None else Round(r["number"], r["start"], tuple(tuple(a) for a in r["asks"]))
    return Shard(record["index"], record["start"], record["stop"], rnd)
