"""A sweep's files: the JSON, the Markdown table, the plot and the chosen spec (YAML).

Each is written to a temporary name and renamed, so a reader never sees half
a file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from flows.job.sweep import ProbeResult
from synthgen.sweep import Rule

COLUMNS = ("agreement", "precision", "recall", "coverage", "frechet", "diversity", "diversity_min", "tstr_ratio",
           "tstr", "images_per_s", "denoiser_passes")
PLOTTED = ("agreement", "recall", "coverage", "diversity", "tstr_ratio", "frechet", "images_per_s", "denoiser_passes")


@dataclass
class SweepOutcome:
    """Every probe's result, the rule and the chosen setting (None: no setting met the thresholds)."""

    job: str
    scratch: str
    per_setting: int
    classifier: str  # "zero-shot (<embedder>)" or the user's MODULE:FUNCTION
    rule: Rule
    results: list[ProbeResult]
    chosen: int | None
    files: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One JSON-ready row per setting."""
        out = []
        for i, r in enumerate(self.results):
            out.append({"setting": r.probe.setting.label, "assignments": r.probe.setting.assignments,
                        "version": r.ref, "reused": r.reused, "chosen": i == self.chosen,
                        "misses": self.rule.misses(r.measures), **r.measures.to_dict()})
        return out

    def to_json(self) -> dict:
        c = self.results[self.chosen].probe.setting if self.chosen is not None else None
        return {"job": self.job, "scratch_dataset": self.scratch, "per_setting": self.per_setting,
                "classifier": self.classifier, "rule": self.rule.model_dump() | {"text": self.rule.describe()},
                "chosen": None if c is None else {"setting": c.label, "assignments": c.assignments},
                "settings": self.rows(), "files": self.files}

    def table(self) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
        """(header, rows) of the sweep table; the chosen row marked with '*'."""
        head = ("", "setting", "rows") + tuple(c.replace("_", " ") for c in COLUMNS) + ("misses",)
        rows = []
        for row in self.rows():
            rows.append(("*" if row["chosen"] else "", row["setting"], str(row["rows"]))
                        + tuple(_fmt(row[c]) for c in COLUMNS) + ("; ".join(row["misses"]),))
        return head, rows


def _fmt(v) -> str:
    if v is None or isinstance(v, int):
        return "-" if v is None else str(v)
    return f"{v:.1f}" if v >= 10 else f"{v:.3f}"


def _write(path: Path, text: str | bytes) -> Path:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(text if isinstance(text, bytes) else text.encode())
    tmp.replace(path)
    return path


def write_markdown(outcome: SweepOutcome, path: Path) -> Path:
    head, rows = outcome.table()
    lines = [f"# Sweep of {outcome.job}", "",
             f"- probes: {outcome.per_setting} images per setting, versions of `{outcome.scratch}`",
             f"- class agreement: {outcome.classifier}", f"- rule: {outcome.rule.describe()}",
             f"- chosen: {outcome.results[outcome.chosen].probe.setting.label if outcome.chosen is not None else 'none'}",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return _write(path, "\n".join(lines) + "\n")


def write_plot(outcome: SweepOutcome, path: Path) -> Path:
    """One panel per measure, a bar per setting; the chosen setting's bar outlined."""
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global state

    labels = [r.probe.setting.label for r in outcome.results]
    fig = Figure(figsize=(max(10.0, 0.9 * len(labels) * 2.5), 6.0))
    axes = fig.subplots(2, 4).ravel()
    x = np.arange(len(labels))
    for ax, key in zip(axes, PLOTTED):
        vals = [getattr(r.measures, key) for r in outcome.results]
        bars = ax.bar(x, [np.nan if v is None else v for v in vals], color="#8da0cb")
        if outcome.chosen is not None:
            bars[outcome.chosen].set_color("#fc8d62")
        for bound in (outcome.rule.minimum.get(key), outcome.rule.maximum.get(key)):
            if bound is not None:
                ax.axhline(bound, color="k", lw=0.8, ls="--")
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        finite = [v for v in vals if v is not None]
        if finite and key not in ("frechet", "images_per_s", "denoiser_passes"):
            ax.set_ylim(max(0.0, min(finite) - 0.05), max(1.0, max(finite)) + 0.02)
    fig.suptitle(f"{outcome.job}: {outcome.rule.describe()} (orange: chosen)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    return _write(path, buf.getvalue())


def write_chosen(outcome: SweepOutcome, path: Path) -> Path | None:
    """The user's spec with the chosen setting (full size, the user's dataset), as YAML."""
    if outcome.chosen is None:
        return None
    r = outcome.results[outcome.chosen]
    head = (f"# {outcome.job} with the setting `synthgen sweep` chose: {r.probe.setting.label}\n"
            f"# rule: {outcome.rule.describe()}\n")
    return _write(path, head + yaml.safe_dump(r.probe.full.model_dump(mode="json"), sort_keys=False))


def write_files(outcome: SweepOutcome, folder: Path) -> dict[str, Path]:
    """Write the table, plot, chosen spec and JSON (last: it lists the others) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"table": write_markdown(outcome, folder / "sweep.md"), "plot": write_plot(outcome, folder / "sweep.png")}
    chosen = write_chosen(outcome, folder / "chosen.yaml")
    if chosen:
        files["chosen_spec"] = chosen
    files["json"] = folder / "sweep.json"
    outcome.files = {k: str(v) for k, v in files.items()}
    _write(files["json"], json.dumps(outcome.to_json(), indent=2))
    return files
