"""The front page's list of datasets and versions, and what a version's page shows besides its gallery."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from catalog import Catalog, Manifest
from catalog.diff import spec_changes

FIGURE_GLOBS = ("*.png", "grids/*.png")  # what a job writes into a version's folder (grid, quality, pairs, grids)


@dataclass
class DatasetRow:
    """One dataset on the front page, with its versions newest first."""

    name: str
    info: dict
    versions: list[Manifest]


def overview(cat: Catalog) -> list[DatasetRow]:
    """Every dataset and its versions (manifests only: no shard is read)."""
    return [DatasetRow(name, cat.info(name), list(reversed(cat.versions(name)))) for name in cat.names()]


@dataclass
class VersionSummary:
    """A version's manifest, its parent's, what changed between them, and its figures."""

    manifest: Manifest
    parent: Manifest | None
    status_delta: dict[str, tuple[int, int]] = field(default_factory=dict)  # status -> (parent rows, rows)
    spec_changes: dict[str, tuple] = field(default_factory=dict)
    added_shards: int = 0
    figures: list[str] = field(default_factory=list)  # paths relative to the version's folder


def figures(folder: Path) -> list[str]:
    """The PNG figures in a version's folder (relative paths, sorted)."""
    return sorted(p.relative_to(folder).as_posix() for g in FIGURE_GLOBS for p in folder.glob(g) if p.is_file())


def summary(cat: Catalog, m: Manifest) -> VersionSummary:
    """What the version page shows above its gallery; costs two manifests and a folder listing."""
    parent = cat.manifest(m.dataset, m.parent) if m.parent else None
    before = parent.rows_by_status if parent else {}
    delta = {s: (before.get(s, 0), m.rows_by_status.get(s, 0)) for s in sorted(before.keys() | m.rows_by_status.keys())}
    changes = spec_changes(parent.job, m.job) if parent else {}
    return VersionSummary(m, parent, delta, changes, len(m.added_shards),
                          figures(cat.version_dir(m.dataset, m.version)))
