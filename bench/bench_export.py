"""Export throughput with and without C2PA content credentials (images/s), PNG files and the sharded HF export.

Builds a temp catalog of ``--rows`` synthetic rows at ``--size`` px (smooth
noise, real PNG bytes), then exports it as PNG files and as a Hugging Face
folder, bare (the baseline) and signed with a generated ES256 chain
(``flows.credentials``), in the same run. Reports images/s, the ratio to the
bare export, and bytes added per image.

    python bench/bench_export.py [--rows 100] [--size 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
from PIL import Image

from bench.report import emit
from catalog import Catalog, open_version, samples_to_table
from flows.credentials import local_identity
from flows.export import export_hf, export_pngs
from synthgen.imaging import encode_png, pixel_sha256
from synthgen.records import KEPT, Sample


def rows(n: int, size: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        small = rng.integers(0, 255, (size // 16, size // 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        out.append(Sample(f"s{i:05d}", "synthetic", plan_index=i, class_id=0, class_name="c0", png=encode_png(img),
                          image_sha256=pixel_sha256(img), width=size, height=size,
                          embedding=np.ones(4, np.float32) / 2, status=KEPT))
    return out


def size_of(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cat = Catalog(tmp / "catalog")
    cat.create("bench", "synthetic")
    with cat.lock("bench"):
        cat.commit("bench", [cat.write_shard("bench", samples_to_table(rows(args.rows, args.size)))])
    version = open_version(cat, "bench")
    identity = local_identity(tmp)
    results, bare = [], {}
    for kind, fn in (("png files", export_pngs), ("hf shards", export_hf)):
        for signed in (False, True):
            dest = tmp / f"{kind.split()[0]}-{signed}"
            t0 = time.perf_counter()
            n = fn(version, dest, identity=identity if signed else None)
            dt = time.perf_counter() - t0
            total = size_of(dest)
            if not signed:
                bare[kind] = (n / dt, total)
            results.append({"export": kind, "credentials": "signed" if signed else "none (baseline)", "images": n,
                            "images_per_s": n / dt, "ratio_vs_baseline": (n / dt) / bare[kind][0],
                            "bytes_per_image": total / n, "added_bytes_per_image": (total - bare[kind][1]) / n})
    emit("export", f"Export throughput, {args.rows} images at {args.size} px, with and without C2PA credentials",
         results, {"rows": args.rows, "size": args.size})


if __name__ == "__main__":
    main()
