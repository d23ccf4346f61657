"""Dedup evidence of a version: similarity histogram, what other thresholds would drop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from catalog.version import DatasetVersion

THRESHOLDS = (0.90, 0.93, 0.95, 0.97, 0.98, 0.99)


@dataclass
class DedupReport:
    ref: str
    rows: int
    by_status: dict[str, int]
    would_drop: dict[float, int]  # threshold -> rows whose synthetic neighbour is at least that close
    would_block: dict[float, int]  # threshold -> rows whose real neighbour is at least that close
    near_threshold: list[dict] = field(default_factory=list)
    histogram: Path | None = None


def dedup_report(version: DatasetVersion, out_png: str | Path | None = None, examples: int = 8) -> DedupReport:
    """Figures from the stored nearest-neighbour evidence; no re-embedding needed."""
    t = version.table(["sample_id", "status", "nn_id", "nn_source", "nn_similarity", "real_nn_similarity",
                       "dedup_threshold"], status="all", origin="synthetic").to_pylist()
    synth = np.array([r["nn_similarity"] if r["nn_source"] != "real" and r["nn_similarity"] is not None else np.nan
                      for r in t], float)
    real = np.array([r["real_nn_similarity"] if r["real_nn_similarity"] is not None else np.nan for r in t], float)
    by_status: dict[str, int] = {}
    for r in t:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    thr = next((r["dedup_threshold"] for r in t if r["dedup_threshold"] is not None), 0.95)
    order = np.argsort(np.abs(np.nan_to_num(synth, nan=-9) - thr))[:examples]
    report = DedupReport(
        version.ref, len(t), by_status,
        {x: int(np.nansum(synth >= x)) for x in THRESHOLDS},
        {x: int(np.nansum(real >= x)) for x in THRESHOLDS},
        [{k: t[i][k] for k in ("sample_id", "status", "nn_id", "nn_source", "nn_similarity")} for i in order],
    )
    if out_png:
        from matplotlib.figure import Figure  # no pyplot: the flow writes its plots from several threads

        fig = Figure(figsize=(7, 3.5))
        ax = fig.subplots()
        finite = np.concatenate([synth[~np.isnan(synth)], real[~np.isnan(real)], [0.5]])
        bins = np.linspace(min(finite.min(), 0.5), 1.0, 60)
        ax.hist(synth[~np.isnan(synth)], bins=bins, alpha=0.6, label="nearest synthetic (kept)")
        ax.hist(real[~np.isnan(real)], bins=bins, alpha=0.6, label="nearest real")
        ax.axvline(thr, color="k", ls="--", label=f"dedup threshold {thr:.2f}")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("samples")
        ax.set_title(f"{version.ref}: nearest-neighbour similarity")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_png, dpi=100)
        report.histogram = Path(out_png)
    return report
