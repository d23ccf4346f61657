"""Export throughput with and without C2PA content credentials (images/s): PNG and JPEG files, HF shards, one Parquet file.

Builds a temp catalog of ``--rows`` synthetic rows at ``--size`` px (smooth
noise, real PNG bytes), then exports it as PNG files, JPEG files (q90), a
Hugging Face folder and one Parquet file, bare (the baseline) and signed with
a generated ES256 chain (``flows.outputs.credentials``), in the same run. Bare and
signed alternate ``--repeats`` times and the fastest of each is kept (the
machine is shared). Reports images/s, the ratio to the bare export of the
same format, and bytes added per image.

    python bench/bench_export.py [--rows 100] [--size 256] [--repeats 2]
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
from flows.outputs.credentials import local_identity
from flows.outputs.export import ImageEncoding, export_hf, export_images, export_parquet
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


EXPORTS = {  # name -> export(version, dest folder, identity)
    "png files": lambda v, d, i: export_images(v, d, identity=i),
    "jpeg files q90": lambda v, d, i: export_images(v, d, identity=i, encoding=ImageEncoding(format="jpeg")),
    "hf shards": lambda v, d, i: export_hf(v, d, identity=i),
    "parquet file": lambda v, d, i: (d.mkdir(), export_parquet(v, d / "data.parquet", identity=i))[1],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    cat = Catalog(tmp / "catalog")
    cat.create("bench", "synthetic")
    with cat.lock("bench"):
        cat.commit("bench", [cat.write_shard("bench", samples_to_table(rows(args.rows, args.size)))])
    version = open_version(cat, "bench")
    identity = local_identity(tmp)
    results = []
    for kind, export in EXPORTS.items():
        best: dict[bool, tuple[float, int, int]] = {}  # signed -> (images/s, images, bytes)
        for r in range(args.repeats):
            for signed in (False, True):
                dest = tmp / f"{kind.split()[0]}-{signed}-{r}"
                t0 = time.perf_counter()
                n = export(version, dest, identity if signed else None)
                rate = n / (time.perf_counter() - t0)
                if rate > best.get(signed, (0.0,))[0]:
                    best[signed] = (rate, n, size_of(dest))
        for signed in (False, True):
            rate, n, total = best[signed]
            results.append({"export": kind, "credentials": "signed" if signed else "none (baseline)", "images": n,
                            "images_per_s": rate, "ratio_vs_baseline": rate / best[False][0],
                            "bytes_per_image": total / n, "added_bytes_per_image": (total - best[False][2]) / n})
    # 'images', not 'rows': emit() stores the table under 'rows'
    emit("export", f"Export throughput, {args.rows} images at {args.size} px, with and without C2PA credentials",
         results, {"images": args.rows, "size": args.size, "repeats": args.repeats})


if __name__ == "__main__":
    main()
