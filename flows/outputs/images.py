"""The two images a version's report shows: a grid of kept samples, and its closest pairs to real data.

Both read only the rows they show (grid: kept rows' images per label; pairs:
the run's closest rows and just their real partners).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from catalog import Catalog, open_version
from synthgen.imaging import decode, make_grid


def images_at(path: str, rows: list[int]) -> dict[int, bytes]:
    """PNG bytes of the given row numbers of one Parquet file, reading only the row groups that hold them."""
    pf = pq.ParquetFile(path)
    out: dict[int, bytes] = {}
    start = 0
    wanted = sorted(set(rows))
    for g in range(pf.num_row_groups):
        stop = start + pf.metadata.row_group(g).num_rows
        here = [r for r in wanted if start <= r < stop]
        if here:
            col = pf.read_row_group(g, columns=["image"])["image"].combine_chunks().field("bytes")
            out.update((r, col[r - start].as_py()) for r in here)
        start = stop
    return out


def write_grid(catalog: Catalog, dataset: str, version: int, files: list[str], per_row: int = 10) -> Path:
    """A grid of kept samples (one row per class or prompt) in the version's folder.

    The label columns are read first; images only for the rows shown.
    """
    picked: dict[str, list[tuple[str, int]]] = {}
    for f in files:
        t = pq.read_table(f, columns=["label_name", "prompt", "status"])
        for i, (name, prompt, status) in enumerate(zip(t["label_name"].to_pylist(), t["prompt"].to_pylist(),
                                                       t["status"].to_pylist())):
            if status != "kept":
                continue
            row = picked.setdefault(name or prompt or "", [])
            if len(row) < per_row:
                row.append((f, i))
    shown = list(picked.values())[:32]
    by_file: dict[str, list[int]] = {}
    for f, i in (x for r in shown for x in r):
        by_file.setdefault(f, []).append(i)
    images = {(f, i): b for f, rows in by_file.items() for i, b in images_at(f, rows).items()}
    out = catalog.version_dir(dataset, version) / "grid.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    make_grid([[decode(images[x]) for x in r] for r in shown]).save(out)
    return out


def write_real_pairs(catalog: Catalog, dataset: str, version: int, files: list[str], real_ref: str,
                     n: int = 8) -> Path | None:
    """Side-by-side (synthetic | real) image of the run's closest pairs to real data, blocked first.

    Each file's closest ``n`` are chosen from its evidence columns, the
    overall ``n`` from those, and only their images are read: memory holds
    ``n`` candidates per file, whatever the job's size.
    """
    cols = ["status", "real_pixel_distance", "real_pixel_nn_id", "real_nn_similarity", "real_nn_id"]
    # closest by pixel distance when the guard ran, else by CLIP similarity
    key = (lambda r: (r["status"] != "blocked_real_copy", r["real_pixel_distance"] if r["real_pixel_distance"]
                      is not None else 2 - (r["real_nn_similarity"] or -1)))
    rows = []
    for f in files:
        here = [dict(r, _file=f, _row=i) for i, r in enumerate(pq.read_table(f, columns=cols).to_pylist())]
        rows = sorted(rows + sorted(here, key=key)[:n], key=key)[:n]
    if not rows:
        return None
    top = rows
    for f in {r["_file"] for r in top}:
        got = images_at(f, [r["_row"] for r in top if r["_file"] == f])
        for r in top:
            if r["_file"] == f:
                r["image"] = {"bytes": got[r["_row"]]}
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
