"""Ingest of a real set (``catalog.ingest``): memory flat in the set's size, throughput against a bare loop.

Per set size (256-px JPEGs in 10 class folders, generated once under ``--root``):

* a bare loop in its own process: decode each file and embed batches of 256 with the embedder's
  ``embed_images``, one thread (torch too): the per-core rate, over the first ``--bare`` files;
* the ingest in its own process, as ``synthgen ingest`` runs it (every core, the embedder split
  between the decode threads and the batch): images/s (model load excluded), its peak RSS
  (``ru_maxrss``), the bytes it wrote (``/proc/self/io`` wchar) against the catalog's final bytes;
* both loops' CPU time per image (all threads): on a shared machine the wall-clock ratio depends on
  what else runs, while ``cpu_bare_per_ingest`` says what the ratio would be on free cores.

Targets (issue 26): peak RSS of the largest set / the smallest <= 1.2 and < 2 GB; images/s >= 0.8 x
cores x the bare per-core rate; bytes written / final close to 1.

    python bench/bench_ingest.py [--sizes 10000 100000] [--root /tmp/ingest-bench] [--stub]

``--stub``: embeddings of zeros instead of the CLIP model (for sets too large to embed here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.report import emit  # noqa: E402
from synthgen.parallel import machine_cores  # noqa: E402


def generate(folder: Path, n: int) -> Path:
    """``n`` 256-px JPEGs (smooth, ~16 KB each, all different) in 10 class folders; kept between runs."""
    done = folder / f".complete-{n}"
    if done.exists():
        return folder
    rng = np.random.default_rng(0)
    base = [np.asarray(Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).resize((256, 256),
                                                                                                  Image.BICUBIC))
            for _ in range(64)]
    for i in range(n):
        d = folder / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        a = base[i % 64].copy()
        a[i % 256, :, i % 3] = (i * 7) % 255
        a[:, (i // 256) % 256, 1] = i % 251
        Image.fromarray(a).save(d / f"{i:07d}.jpg", quality=90)
    done.touch()
    return folder


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def child_bare(folder: str, limit: int) -> dict:
    import torch

    from synthgen.embedder import load_embedder
    from synthgen.imaging import read_image_file
    from synthgen.spec import EmbedderSpec

    torch.set_num_threads(1)
    emb = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
    files = sorted(Path(folder).rglob("*.jpg"))[:limit]
    t0, c0 = time.perf_counter(), _cpu()
    for i in range(0, len(files), 256):
        emb.embed_images([read_image_file(f)[1] for f in files[i : i + 256]])
    return {"files": len(files), "per_core_img_s": len(files) / (time.perf_counter() - t0),
            "cpu_ms_per_img": (_cpu() - c0) / len(files) * 1e3}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def child_ingest(folder: str, work: str, stub: bool) -> dict:
    import torch

    from catalog import Catalog
    from catalog.ingest import ingest_folder
    from catalog.ingest_decode import EmbedSteps
    from synthgen.embedder import load_embedder
    from synthgen.spec import EmbedderSpec

    torch.set_num_threads(1)  # the forward runs beside the decode threads, which take the other cores
    if stub:
        steps, name = EmbedSteps(lambda img: None, lambda items: np.zeros((len(items), 64), np.float32)), "stub"
    else:
        emb = load_embedder(EmbedderSpec(model="embedded:digits-clip"))
        steps, name = EmbedSteps(emb.prepare_image, emb.embed_prepared), emb.name
    cat = Catalog(Path(work) / "catalog")
    w0, t0, c0 = _wchar(), time.perf_counter(), _cpu()
    m = ingest_folder(cat, "real", folder, steps, name, staging=Path(work) / "staging")
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    written = _wchar() - w0  # every write() call: shards, staged thumbnails, the guard, records, manifest
    final = sum(p.stat().st_size for p in cat.path("real").rglob("*") if p.is_file())
    return {"rows": m.rows, "img_s": m.rows / wall, "wall_s": wall, "written": written, "final": final,
            "cpu_ms_per_img": cpu / m.rows * 1e3,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--root", default="/tmp/ingest-bench")
    ap.add_argument("--bare", type=int, default=4000, help="files in the bare loop (the first of the same set)")
    ap.add_argument("--stub", action="store_true", help="zero embeddings instead of the CLIP model")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_bare(rest[0], int(rest[1])) if kind == "bare" else child_ingest(rest[0], rest[1], rest[2] == "1")
        print(json.dumps(result))
        return
    cores, rows = machine_cores(), []
    for n in args.sizes:
        folder = generate(Path(args.root) / f"{n // 1000}k", n)
        work = Path(args.root) / f"work-{n}"
        shutil.rmtree(work, ignore_errors=True)
        bare = _run_child("bare", str(folder), str(args.bare))
        got = _run_child("ingest", str(folder), str(work), "1" if args.stub else "0")
        shutil.rmtree(work, ignore_errors=True)
        rows.append({
            "images": n, "ingest_img_s": got["img_s"], "bare_per_core_img_s": bare["per_core_img_s"], "cores": cores,
            "vs_cores_x_bare": got["img_s"] / (cores * bare["per_core_img_s"]),
            # Load-independent: the bare loop's CPU per image over the ingest's (all threads). With free
            # cores and a perfect overlap, vs_cores_x_bare would reach this.
            "cpu_bare_per_ingest": bare["cpu_ms_per_img"] / got["cpu_ms_per_img"], "peak_rss_mb": got["peak_rss_mb"],
            "written_mb": got["written"] / 1e6, "final_mb": got["final"] / 1e6,
            "written_per_final": got["written"] / got["final"], "wall_s": got["wall_s"], "load_avg_1m": os.getloadavg()[0],
        })
    for r in rows:
        r["rss_vs_smallest"] = r["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    emit("ingest" + ("-stub" if args.stub else ""), "ingest: streaming, parallel (256-px JPEGs)", rows,
         {"stub_embeddings": args.stub, "bare_files": args.bare})


if __name__ == "__main__":
    main()
