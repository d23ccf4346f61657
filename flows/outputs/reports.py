"""What a finished job reports: objects the flow writes and logs to MLflow in one loop.

Each report turns the committed version (``Finished``) into files in the
version's folder and a ``Logged`` record of what MLflow gets (artifacts,
metrics, tags, dataset versions). ``LANES`` are written at once, each in
its order; ``REPORTS`` is every report, in logging order. A new report is
one class here and one entry in a lane.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import yaml

from catalog import Catalog
from catalog.card import quality_or_reason, write_card
from catalog.dedup_report import dedup_report
from catalog.layout import manifest_key
from catalog.per_condition import ConditionCounts
from catalog.version import open_version
from flows.job.commit import CommitReport
from flows.outputs.images import write_grid, write_real_pairs
from flows.job.shard_step import ShardReport
from synthgen.spec import JobSpec


@dataclass
class Finished:
    """What the reports are made from: the committed version and how the run went."""

    catalog: Catalog
    job: JobSpec
    commit: CommitReport
    metrics: dict[str, float]
    shard_runs: list[dict] = field(default_factory=list)
    shard_pool: str | None = None
    per_condition: ConditionCounts | None = None  # generated / kept per condition (``catalog.per_condition``)

    @property
    def ref(self) -> str:
        return f"{self.commit.dataset}@{self.commit.version}"

    @property
    def restricted(self) -> bool:
        """Whether the committed version is restricted (its manifest's sealed flag): e.g. made from restricted
        real images (real-image guidance). Its images then stay in the catalog: no report sends them to MLflow."""
        return self.catalog.manifest(self.commit.dataset, self.commit.version).restricted

    @property
    def folder(self) -> Path:
        """The version's folder, where its reports are written."""
        return self.catalog.version_dir(self.commit.dataset, self.commit.version)


@dataclass
class Logged:
    """What one report hands to MLflow."""

    artifacts: list[Path] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)  # artifact folder -> local directory
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    datasets: list[tuple[str, str, str, str]] = field(default_factory=list)  # (name, digest, source, context)

    def log_to(self, tracker) -> None:
        """Send everything to ``tracker`` (``flows.tracking.Tracker``)."""
        if self.metrics:
            tracker.log_metrics(self.metrics)
        for path in self.artifacts:
            tracker.log_artifact(path)
        for name, directory in self.folders.items():
            tracker.log_artifacts(directory, name)
        for ds in self.datasets:
            tracker.log_dataset(*ds)
        if self.tags:
            tracker.set_tags(self.tags)


class Report(Protocol):
    def write(self, done: Finished) -> Logged: ...


class Metrics:
    """The run's summary numbers (counts, throughput, where the time went)."""

    def write(self, done: Finished) -> Logged:
        return Logged(metrics=done.metrics)


def shard_files(done: Finished, roles: tuple[str, ...] = ("train",)) -> list[str]:
    """The version's added shards of ``roles`` as local files to read (at a URL: verified copies in the cache)."""
    c, cat = done.commit, done.catalog
    if cat.url is None:
        return [f for role in roles for f in (c.files if role == "train" else c.excluded_files)]
    m = cat.manifest(c.dataset, c.version)
    added = set(m.added_shards)
    return [str(cat.verified_shard(c.dataset, s)) for role in roles for s in m.shards
            if s.sha256 in added and s.role == role]


class Grid:
    """A contact sheet of kept samples, one row per class or prompt."""

    def write(self, done: Finished) -> Logged:
        if done.restricted:
            return Logged()
        c = done.commit
        return Logged([write_grid(done.catalog, c.dataset, c.version, shard_files(done))])


class VersionFiles:
    """The version's manifest and the job spec that made it."""

    def write(self, done: Finished) -> Logged:
        spec_file = done.folder / "job.yaml"
        spec_file.write_text(yaml.safe_dump(done.job.model_dump(mode="json"), sort_keys=False))
        manifest = Path(done.commit.manifest_path)
        if done.catalog.url is not None:  # logged from a copy of the stored bytes, beside the spec
            manifest = done.folder / Path(done.commit.manifest_path).name
            manifest.write_bytes(done.catalog.storage.manifest_bytes(done.commit.dataset, done.commit.version))
        return Logged([manifest, spec_file])


class ShardRuns:
    """Which host and GPU made each shard (distributed runs only)."""

    def write(self, done: Finished) -> Logged:
        if not done.shard_runs:
            return Logged()
        where = done.folder / "shard-runs.json"
        where.write_text(json.dumps(done.shard_runs, indent=1))
        return Logged([where], tags={"synthgen.shard_pool": done.shard_pool})


class PerCondition:
    """Generated and kept rows per condition, and which conditions hit the cap (``kept_per_condition`` jobs)."""

    def write(self, done: Finished) -> Logged:
        counts = done.per_condition
        if counts is None or counts.target is None:
            return Logged()
        where = done.folder / "per-condition.json"
        where.write_text(json.dumps({"kept_per_condition": counts.target, "max_per_condition": counts.cap,
                                     "capped": counts.capped, "missed": counts.missed,
                                     "conditions": [asdict(r) for r in counts.rows]}, indent=1))
        return Logged([where], metrics=counts.metrics(),
                      tags={"synthgen.capped_conditions": ", ".join(counts.capped) or "none"})


class RealPairs:
    """Side by side, the run's closest samples to real data and their real partners.

    Against a restricted real set, the blocked rows are left out: they are
    copies of its images, and the image goes to MLflow. Only kept rows (which
    passed the guard) are shown, without their real partners. A restricted
    output gets none: its own rows are restricted.
    """

    def write(self, done: Finished) -> Logged:
        real = done.job.dedup.real_dataset
        if not real or done.restricted:
            return Logged()
        c = done.commit
        restricted = open_version(done.catalog, real).restricted
        files = shard_files(done, ("train",) if restricted else ("train", "excluded"))
        pairs = write_real_pairs(done.catalog, c.dataset, c.version, files, real)
        return Logged([pairs] if pairs else [])


class Card:
    """The dataset card with its quality report, per-class images and quality plot.

    The quality report (``synthgen.quality_report``: PRDC, Frechet distance, diversity against the
    real reference, from stored embeddings) is computed once here: its metrics go to MLflow, its
    table and plot into the card.
    """

    def write(self, done: Finished) -> Logged:
        quality = quality_or_reason(done.catalog, done.ref)
        card = write_card(done.catalog, done.ref, quality)
        plot = card.parent / "quality.png"
        return Logged([card] + ([plot] if plot.is_file() else []), folders={"grids": card.parent / "grids"},
                      metrics=quality.metrics() if not isinstance(quality, str) else {})


class Histogram:
    """Nearest-neighbour similarities, and how many rows other thresholds would drop or block.

    Only counts and a histogram leave, so a restricted output gets it too (as its card does).
    """

    def write(self, done: Finished) -> Logged:
        r = dedup_report(open_version(done.catalog, done.ref, allow_restricted=True), done.folder / "dedup-histogram.png")
        return Logged([r.histogram], metrics={f"rows_nn_synthetic_ge_{x:.2f}": n for x, n in r.would_drop.items()}
                      | {f"rows_nn_real_ge_{x:.2f}": n for x, n in r.would_block.items()})


class Lineage:
    """The version as the run's output dataset, and the real dataset it was guarded against."""

    def write(self, done: Finished) -> Logged:
        cat, c, real = done.catalog, done.commit, done.job.dedup.real_dataset
        datasets = [(done.ref, c.manifest_sha256, c.manifest_path, "output")]
        if real:
            v = cat.head(real)
            datasets.append((f"{real}@{v}", cat.manifest_sha256(real, v), cat.where(manifest_key(real, v)), "reference"))
        return Logged(datasets=datasets, tags={"synthgen.dataset": done.ref, "synthgen.reused_version": str(c.reused)})


# Written side by side, each lane in its order: the card shows the real-pairs image, so it follows RealPairs.
LANES: tuple[tuple[Report, ...], ...] = ((RealPairs(), Card()),
                                         (Metrics(), Grid(), VersionFiles(), ShardRuns(), PerCondition(), Histogram(),
                                          Lineage()))
REPORTS: tuple[Report, ...] = tuple(r for lane in LANES for r in lane)


def write_reports(done: Finished) -> list[Logged]:
    """Write every report, two lanes at once (images, numpy, plots); what to log comes back in ``REPORTS`` order.

    The reports are the last thing a run waits for after its commit: one
    lane per core halves that wait (~0.8 -> ~0.4 s for 64 images at 512 px).
    """
    def lane(reports: tuple[Report, ...]) -> list[Logged]:
        return [r.write(done) for r in reports]

    with ThreadPoolExecutor(len(LANES), thread_name_prefix="synthgen-reports") as pool:
        return [logged for part in pool.map(lane, LANES) for logged in part]


def prefetch_plotting() -> threading.Thread:
    """Import matplotlib (Agg) in a background thread, e.g. while Prefect's server starts.

    The card's quality plot and the histogram are the first to import it,
    after the commit: ~0.5-1 s at the very end of every run otherwise.
    """

    def load() -> None:
        import matplotlib.backends.backend_agg  # noqa: F401 - what Figure.savefig uses for PNG
        import matplotlib.figure  # noqa: F401

    thread = threading.Thread(target=load, name="synthgen-plots", daemon=True)
    thread.start()
    return thread


def summary_metrics(report: CommitReport, shard_reports: list[ShardReport], wall_s: float) -> dict[str, float]:
    """The numbers MLflow and the CLI summary show."""
    generated = sum(report.counts.values())
    fresh = sum(r.rows for r in shard_reports if not r.reused)
    sampling = sum(r.sampling_s for r in shard_reports)
    return {
        "generated": generated,
        "kept": report.counts.get("kept", 0),
        "dropped_duplicate": report.counts.get("dropped_duplicate", 0),
        "blocked_real_copy": report.counts.get("blocked_real_copy", 0),
        "low_quality": report.counts.get("low_quality", 0),
        "generated_this_run": fresh,
        "shards_reused": sum(r.reused for r in shard_reports),
        "shards_rewritten": report.rewritten_shards,  # written twice: staged undecided, or changed by a recheck
        "images_per_s": fresh / wall_s if wall_s > 0 else 0.0,
        "sampling_s": sampling,
        "wall_s": wall_s,
    }
