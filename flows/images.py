"""The two images a version's report shows: a grid of kept samples, and its closest pairs to real data.

Both read only the rows they show (grid: kept rows' images per label; pairs:
the run's closest rows and just their real partners).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog import Catalog, open_version
from synthgen.imaging import decode, make_grid


def write_grid(catalog: Catalog, dataset: str, version: int, files: list[str], per_row: int = 10) -> Path:
    """A grid of kept samples (one row per class or prompt) in the version's folder."""
    rows: dict[str, list] = {}
    for f in files:
        t = pq.read_table(f, columns=["image", "label", "label_name", "prompt", "status"])
        t = t.filter(pc.equal(t["status"], "kept"))
        for img, name, prompt in zip(
            t["image"].combine_chunks().field("bytes").to_pylist(), t["label_name"].to_pylist(), t["prompt"].to_pylist()
        ):
            row = rows.setdefault(name or prompt or "", [])
            if len(row) < per_row:
                row.append(decode(img))
    out = catalog.version_dir(dataset, version) / "grid.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(list(rows.values())[:32]).save(out)
    return out


def write_real_pairs(catalog: Catalog, dataset: str, version: int, files: list[str], real_ref: str,
                     n: int = 8) -> Path | None:
    """Side-by-side (synthetic | real) image of the run's closest pairs to real data, blocked first."""
    rows = []
    for f in files:
        t = pq.read_table(f, columns=["image", "status", "real_pixel_distance", "real_pixel_nn_id",
                                      "real_nn_similarity", "real_nn_id"])
        rows += t.to_pylist()
    if not rows:
        return None
    # closest by pixel distance when the guard ran, else by CLIP similarity
    key = (lambda r: (r["status"] != "blocked_real_copy", r["real_pixel_distance"] if r["real_pixel_distance"]
                      is not None else 2 - (r["real_nn_similarity"] or -1)))
    top = sorted(rows, key=key)[:n]
    real_id = lambda r: r["real_pixel_nn_id"] if r["real_pixel_distance"] is not None else r["real_nn_id"]  # noqa: E731
    real = open_version(catalog, real_ref)
    # A restricted real set's images stay in the catalog: the report shows its pairs' synthetic side only.
    real_by_id = {} if real.restricted else real.images([real_id(r) for r in top if real_id(r)])
    pairs = []
    for r in top:
        rid = real_id(r)
        if rid in real_by_id:
            pairs.append([decode(r["image"]["bytes"]), decode(real_by_id[rid])])
        elif rid and real.restricted:
            pairs.append([decode(r["image"]["bytes"])])
    if not pairs:
        return None
    out = catalog.version_dir(dataset, version) / "closest-real-pairs.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid(pairs).save(out)
    return out
