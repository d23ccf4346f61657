"""The quality report of one dataset version: one object, rendered for the card, MLflow and JSON.

Built by ``catalog.quality.version_quality`` from stored embeddings; the
numbers come from ``synthgen.quality``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from synthgen.quality import QualityConfig, SetScores
from synthgen.utility import TEST_SHARE, UtilityScores

SCORES = ("precision", "recall", "density", "coverage", "frechet_distance", "diversity_ratio",
          "nn_distance_synthetic", "nn_distance_real")
# The training-utility figure's metrics: (metric name, UtilityScores field).
UTILITY = (("tstr_ratio", "ratio"), ("tstr", "tstr"), ("trtr", "trtr"), ("utility_train_rows", "train_rows"),
           ("utility_test_rows", "test_rows"))
_PER_GROUP_METRICS = 100  # more classes/prompts than this: overall metrics only in MLflow


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _metric_key(text: str) -> str:
    # MLflow metric names: alphanumerics, _ - . / and spaces; prompts can hold anything.
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", text)[:200]


@dataclass
class QualityReport:
    """Fidelity and diversity of ``ref`` against ``reference`` (None: internal diversity only)."""

    ref: str
    reference: str | None
    embedding_model: str | None
    config: QualityConfig
    overall: SetScores
    groups: list[SetScores] = field(default_factory=list)
    note: str = ""  # why a comparison is missing, when it is
    utility: UtilityScores | None = None  # the linear probe's TSTR / TRTR (None: no reference)

    def metrics(self, prefix: str = "quality") -> dict[str, float]:
        """Flat MLflow metrics: ``quality.<score>`` and ``quality.<class>.<score>``."""
        out = {f"{prefix}.{s}": getattr(self.overall, s) for s in SCORES}
        out |= {f"{prefix}.k": self.config.k, f"{prefix}.seed": self.config.seed,
                f"{prefix}.synthetic_sampled": self.overall.synthetic_sampled,
                f"{prefix}.real_sampled": self.overall.real_sampled}
        if self.utility is not None:
            out |= {f"{prefix}.{name}": getattr(self.utility, key) for name, key in UTILITY}
        if len(self.groups) <= _PER_GROUP_METRICS:
            for g in self.groups:
                out |= {f"{prefix}.{_metric_key(g.group)}.{s}": getattr(g, s)
                        for s in ("precision", "recall", "density", "coverage", "diversity_ratio")}
        return {k: float(v) for k, v in out.items() if v is not None}

    def to_json(self) -> dict:
        """Everything in the report, JSON-ready (``synthgen quality --json``)."""
        return {"ref": self.ref, "reference": self.reference, "embedding_model": self.embedding_model,
                "config": self.config.model_dump(), "note": self.note, "overall": self.overall.to_dict(),
                "groups": [g.to_dict() for g in self.groups],
                "utility": None if self.utility is None else self.utility.to_dict()}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def to_markdown(self, plot: str | None = None, max_rows: int = 50) -> str:
        """The card's section: what was compared with what, an overall and a per-class table."""
        c, o = self.config, self.overall
        lines = ["\n## Quality against the real data\n"]
        if self.reference:
            lines.append(f"- reference: **{self.reference}**, in the space of `{self.embedding_model}`; "
                         f"k = {c.k}; sampling seed {c.seed} (at most {c.max_samples} rows overall, "
                         f"{c.max_per_group} per class or prompt)")
            lines.append(f"- rows: {o.synthetic_rows} kept synthetic, {o.real_rows} real; every score compares "
                         f"equal samples of both (n = {o.synthetic_sampled} overall; per class or prompt, n below)")
            lines.append("- precision/density: synthetic samples inside the real data's k-NN balls; "
                         "recall/coverage: real data reached by the synthetic set (Kynkaanniemi 2019, Naeem 2020); "
                         "diversity ratio: mean distance to the nearest synthetic neighbour over the same among "
                         "as many real samples (1 = as varied as the real data)")
        else:
            lines.append(f"- no real reference: internal diversity only (`{self.embedding_model}`; "
                         f"seed {c.seed}, at most {c.max_samples} rows)")
        if self.note:
            lines.append(f"- {self.note}")
        cols = ("precision", "recall", "density", "coverage", "frechet_distance", "diversity_ratio",
                "nn_distance_synthetic")
        head = ("class / prompt", "synthetic", "real", "n") + tuple(x.replace("_", " ") for x in cols)
        rows = [("**all**",) + self._row(o, cols)] + [(g.group,) + self._row(g, cols) for g in self.groups[:max_rows]]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += self._utility_lines()
        if len(self.groups) > max_rows:
            lines.append(f"\n({len(self.groups) - max_rows} more classes or prompts in `synthgen quality {self.ref} --json`)")
        if plot:
            lines.append(f"\n![quality per class]({plot})")
        return "\n".join(lines) + "\n"

    def _utility_lines(self) -> list[str]:
        """The training-utility figure: a linear probe trained on synthetic, tested on held-out real."""
        u = self.utility
        if u is None:
            return []
        lines = ["", f"Training utility (linear probe in the space of `{self.embedding_model}`: a ridge classifier "
                 f"trained on n = {u.train_rows} synthetic rows (TSTR) or as many real rows (TRTR), tested on "
                 f"{u.test_rows} held-out real rows ({TEST_SHARE:.0%} of each class); {u.classes} classes):", "",
                 "| TSTR / TRTR | TSTR | TRTR | n train | n test |", "|---|---|---|---|---|",
                 f"| **{_fmt(u.ratio)}** | {_fmt(u.tstr)} | {_fmt(u.trtr)} | {u.train_rows} | {u.test_rows} |"]
        if u.note:
            lines.append(f"\n- not assessed: {u.note}")
        return lines

    @staticmethod
    def _row(s: SetScores, cols: tuple[str, ...]) -> tuple[str, ...]:
        return (f"{s.synthetic_rows}", f"{s.real_rows}", f"{s.synthetic_sampled}") + tuple(_fmt(getattr(s, x)) for x in cols)

    def write_plot(self, path: str | Path) -> Path | None:
        """Per-class bars of recall, coverage and diversity ratio (where a reference exists); PNG."""
        shown = [g for g in self.groups if g.coverage is not None or g.diversity_ratio is not None][:50]
        if not shown:
            return None
        import numpy as np
        from matplotlib.figure import Figure  # no pyplot: the flow writes its plots from several threads

        keys = ("precision", "recall", "coverage", "diversity_ratio")
        x = np.arange(len(shown))
        fig = Figure(figsize=(max(6.0, 0.6 * len(shown) + 2), 3.5))
        ax = fig.subplots()
        for i, key in enumerate(keys):
            vals = [getattr(g, key) if getattr(g, key) is not None else np.nan for g in shown]
            ax.bar(x + (i - 1.5) * 0.2, vals, 0.2, label=key.replace("_", " "))
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(x, [g.group for g in shown], rotation=45 if len(shown) > 10 else 0, ha="right" if len(shown) > 10 else "center")
        ax.set_ylim(0, max(1.35, np.nanmax([g.diversity_ratio or 0 for g in shown]) + 0.3))  # room for the legend
        ax.set_title(f"{self.ref} vs {self.reference} (k={self.config.k})")
        ax.legend(fontsize=8, ncol=4, loc="upper center")
        fig.tight_layout()
        out = Path(path)
        tmp = out.with_name(f".tmp-{out.name}")
        fig.savefig(tmp, dpi=100, format="png")
        tmp.replace(out)
        return out


def side_by_side(a: QualityReport, b: QualityReport) -> list[tuple[str, float | None, float | None, float | None]]:
    """(score, A, B, B - A) for the overall scores and each class/prompt present in either."""
    rows = []
    pairs = [("all", a.overall, b.overall)]
    ga, gb = {g.group: g for g in a.groups}, {g.group: g for g in b.groups}
    pairs += [(name, ga.get(name), gb.get(name)) for name in dict.fromkeys([*ga, *gb])]  # A's order, then B's new
    for name, sa, sb in pairs:
        for key in ("synthetic_rows",) + SCORES[:6]:
            va, vb = (getattr(sa, key) if sa else None), (getattr(sb, key) if sb else None)
            rows.append((f"{name}.{key}", va, vb, None if va is None or vb is None else vb - va))
    for name, key in UTILITY[:3]:
        va, vb = (getattr(u, key) if u else None for u in (a.utility, b.utility))
        rows.append((f"all.{name}", va, vb, None if va is None or vb is None else vb - va))
    return rows
