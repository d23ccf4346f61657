"""Sample grids per class (or prompt) for a version's dataset card."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import pyarrow as pa

from catalog.safe_paths import confined
from catalog.store import Catalog
from catalog.version import open_version
from synthgen.imaging import decode, make_grid

MAX_GROUPS = 50  # the card's class table shows at most 50 rows too


def _slug(label: str) -> str:
    # Prompts can be long and collide after slugging: a short hash keeps names unique.
    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40] or "unlabelled"
    return f"{base}-{hashlib.sha256(label.encode()).hexdigest()[:6]}" if len(label) > 40 else base


def write_class_grids(cat: Catalog, ref: str, per_class: int = 24, cols: int = 8) -> list[tuple[str, Path]]:
    """One contact sheet of kept samples per class or prompt, in plan order; returns (label, path) pairs.

    Files go to the version's folder as ``grids/<label>.png``; the first
    ``per_class`` kept rows of each group are shown, ``cols`` per line.
    """
    v = open_version(cat, ref)
    t = v.table(["sample_id", "label_name", "prompt", "origin"])
    con = duckdb.connect()
    # An explicit row number: DuckDB does not promise a scan order without one.
    con.register("t", t.append_column("rid", pa.array(range(t.num_rows), pa.int64())))
    picked = con.execute(
        "SELECT sample_id, grp FROM (SELECT sample_id, rid, coalesce(label_name, prompt, '') AS grp, "
        "row_number() OVER (PARTITION BY coalesce(label_name, prompt, '') ORDER BY origin DESC, rid) AS k FROM t) "
        "WHERE k <= ? ORDER BY grp, rid", [per_class]
    ).fetchall()
    groups: dict[str, list[str]] = {}
    for sid, grp in picked:
        if grp in groups or len(groups) < MAX_GROUPS:
            groups.setdefault(grp, []).append(sid)
    # Only the shown rows' images are read, not the whole version's image column.
    images = v.images([sid for ids in groups.values() for sid in ids])
    folder = cat.version_dir(v.name, v.version) / "grids"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, rows in groups.items():
        tiles = [decode(images[sid]) for sid in rows]
        path = confined(folder, f"{_slug(label)}.png")
        make_grid([tiles[i : i + cols] for i in range(0, len(tiles), cols)]).save(path)
        written.append((label, path))
    return written
