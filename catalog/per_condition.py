"""Rows generated and kept per condition by the job that made a version, and which conditions hit their cap.

A ``kept_per_condition: N`` job generates until each condition has N kept
rows or has generated its ``max_per_condition``; this is what it did, read
back from the version's rows (the rows the job made carry its digest), so the
card, the run summary and MLflow report the same figures, also for a run
answered from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from catalog.version import DatasetVersion, read_rows
from synthgen.records import KEPT


@dataclass(frozen=True)
class ConditionCount:
    """One condition (class name or prompt): rows its job generated, rows kept, and whether it hit its cap."""

    condition: str
    generated: int
    kept: int
    capped: bool = False


@dataclass(frozen=True)
class ConditionCounts:
    """Per-condition counts of one job; ``target``/``cap``: its ``kept_per_condition``/``max_per_condition``
    (None for a job with a fixed ``images_per_condition``)."""

    target: int | None
    cap: int | None
    rows: list[ConditionCount] = field(default_factory=list)

    @property
    def capped(self) -> list[str]:
        """Conditions that generated their cap short of the kept count."""
        return [r.condition for r in self.rows if r.capped]

    @property
    def missed(self) -> list[str]:
        """Conditions whose kept count is not the target though they did not hit the cap: only when the head
        moved during the job and the recheck (``flows.job.recheck``) changed decisions after the plan was
        complete; empty for a fixed-count job."""
        if self.target is None:
            return []
        return [r.condition for r in self.rows if r.kept != self.target and not r.capped]

    def metrics(self) -> dict[str, float]:
        """Figures for MLflow: the spread of kept rows per condition and how many conditions hit the cap."""
        kept = [r.kept for r in self.rows] or [0]
        return {"kept_per_condition_min": float(min(kept)), "kept_per_condition_max": float(max(kept)),
                "conditions_capped": float(len(self.capped)), "conditions_missed": float(len(self.missed))}

    def to_markdown(self) -> str:
        """A section for the card: the target, then one line per condition."""
        if self.target is None:
            head = "- a fixed count per condition (images_per_condition)"
        else:
            head = (f"- kept_per_condition: {self.target}, max_per_condition: {self.cap}; "
                    f"hit the cap: {', '.join(self.capped) or 'none'}")
            if self.missed:
                head += f"; not at the count (rechecked after the plan was complete): {', '.join(self.missed)}"
        lines = ["| class / prompt | generated | kept | hit the cap |", "|---|---|---|---|"]
        cell = lambda text: text.replace("|", "\\|")  # noqa: E731 - a prompt may hold a table's separator
        lines += [f"| {cell(r.condition)} | {r.generated} | {r.kept} | {'yes' if r.capped else ''} |" for r in self.rows]
        return "\n".join(["\n## Generated and kept per condition (this version's job)\n", head, "", *lines])


def condition_names(job: dict) -> list[str]:
    """The job's conditions in plan order: class names or prompts (from the spec as a manifest stores it)."""
    cond = job.get("conditioning") or {}
    if cond.get("classes") is not None:
        return [c["name"] for c in cond["classes"]]
    return list(cond.get("prompts") or [])


def condition_counts(version: DatasetVersion) -> ConditionCounts | None:
    """Per-condition counts of the job that made ``version`` (None: no job made it, e.g. an ingest)."""
    m = version.manifest
    if not m.job or not m.job_digest:
        return None
    t = read_rows(version, ["label_name", "prompt", "status", "job_digest"], "all", "synthetic")
    t = t.filter(pc.equal(t["job_digest"], m.job_digest))
    which = pc.coalesce(t["label_name"], t["prompt"])
    grouped = pa.table({"c": which, "kept": pc.equal(t["status"], KEPT)}).group_by("c").aggregate(
        [("kept", "count"), ("kept", "sum")]).to_pylist()
    got = {g["c"]: (g["kept_count"], g["kept_sum"] or 0) for g in grouped}
    target, cap = m.job.get("kept_per_condition"), m.job.get("max_per_condition")
    rows = []
    for name in condition_names(m.job):
        generated, kept = got.get(name, (0, 0))
        rows.append(ConditionCount(name, generated, kept, target is not None and generated >= cap and kept < target))
    return ConditionCounts(target, cap, rows)
