"""Scale benchmark: dedup decisions at 100k / 1M x 512, the pixel guard over 100k / 1M stored thumbnails,
loader order across processes.

    PYTHONPATH=. python bench/bench_scale.py --part decide|guard|loader|all [--sizes 100000,1000000]

decide: the near-duplicate pass (``NearDuplicatePass``, as the commit runs it, the records made beforehand) over clustered 512-d
embeddings with planted near-copies (cos 0.951-0.99) of earlier samples: every planted copy's source is
an unplanted sample of the first half, so exact search's decisions are known by construction (copies
dropped, all else kept); this is checked against a real exact run at ``--exact-n``, and exact search's
time at the large sizes is extrapolated from that run as n^2 (said in the row).
guard: stored thumbnails (smooth random images, standardised) and their index, written and loaded as
``catalog.guard`` does; ms per synthetic image for ``PixelGuard.nearest`` in batches of 64, half the
queries being shifted, dimmed, noisy copies of real images (recall: copy found at distance <= 0.24; the
ceiling is the share of copies whose exact distance to their source is <= 0.24). Bare baseline in the
same run: the previous guard's candidate search (nine 256-d IVF searches per image), search time only.
Every row carries the load average before and after it (the machine is shared).
guard-ingested: the same queries against the guard an ingest stores: ``n`` distinct smooth 64-px JPEGs
(``--root``, kept between runs) ingested by ``catalog.ingest.ingest_folder`` with stub embeddings, copies
made from the real files (shifted by one thumbnail pixel, edge repeated, dimmed, noisy). Nothing planted.
loader: the iterable loader's order in two processes with different PYTHONHASHSEED (bare baseline:
Python's salted ``hash`` of the same file names, which the old loader seeded with).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import emit  # noqa: E402

THRESHOLD = 0.95


def embeddings(n: int, d: int = 512, planted: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, d), dtype=np.float32)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):  # bounded temporaries
        m = min(n, s + 100_000) - s
        x[s : s + m] = centres[rng.integers(0, 1000, m)] + rng.standard_normal((m, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k = int(n * planted)
    dst = np.sort(rng.choice(np.arange(n // 2, n), size=k, replace=False))
    src = rng.integers(0, n // 2, k)
    t = rng.uniform(0.951, 0.99, (k, 1)).astype(np.float32)
    u = rng.standard_normal((k, d), dtype=np.float32)
    u -= (u * x[src]).sum(1, keepdims=True) * x[src]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x[dst] = t * x[src] + np.sqrt(1 - t * t) * u
    x[dst] /= np.linalg.norm(x[dst], axis=1, keepdims=True)
    expected = np.zeros(n, bool)
    expected[dst] = True  # dropped under exact search
    return x, expected


def run_decide(emb: np.ndarray, exact_limit: int | None = None):
    from synthgen.dedup import NearDuplicatePass
    from synthgen.records import DUPLICATE, Sample
    from synthgen.rules.real_copy import ClipRealCopy

    kw = {} if exact_limit is None else {"exact_limit": exact_limit}
    # The records exist before decide (the engine makes them); their creation is timed apart.
    samples = [Sample(sample_id=f"s{i}", origin="synthetic", embedding=emb[i]) for i in range(len(emb))]
    t0 = time.perf_counter()
    p = NearDuplicatePass(THRESHOLD, [ClipRealCopy(0.98)], **kw)
    p(samples)
    dt = time.perf_counter() - t0
    return dt, np.array([s.status == DUPLICATE for s in samples]), p.run_result


def part_decide(sizes, exact_n):
    rows = []
    emb, expected = embeddings(exact_n, seed=1)
    load0 = os.getloadavg()[0]
    t_exact, dup_exact, r = run_decide(emb, exact_limit=10**9)
    t_auto, dup_auto, r_auto = run_decide(emb)
    load = f"{load0:.1f}-{os.getloadavg()[0]:.1f}"
    rows.append({"part": "decide", "n": exact_n, "index": "exact (bare baseline)", "wall_s": t_exact,
                 "decisions_equal_exact": 1.0, "construction_equal_exact": float(np.mean(dup_exact == expected)),
                 "load_avg": load, "note": "exact run: the construction's decisions checked"})
    rows.append({"part": "decide", "n": exact_n, "index": f"{r_auto.kind} nlist={r_auto.nlist} nprobe={r_auto.nprobe}",
                 "wall_s": t_auto, "ratio_to_exact": t_auto / t_exact,
                 "decisions_equal_exact": float(np.mean(dup_auto == dup_exact)),
                 "recall_planted": float(dup_auto[expected].mean()), "load_avg": load})
    for n in sizes:
        emb, expected = embeddings(n)
        load0 = os.getloadavg()[0]
        dt, dup, r = run_decide(emb)
        est = t_exact * (n / exact_n) ** 2
        rows.append({"part": "decide", "n": n, "index": f"{r.kind} nlist={r.nlist} nprobe<={r.nprobe} (mean {r.probes:.3f})",
                     "wall_s": dt,
                     "exact_s_extrapolated": est, "ratio_to_exact": dt / est,
                     "decisions_equal_exact": float(np.mean(dup == expected)),
                     "recall_planted": float(dup[expected].mean()), "dropped": int(dup.sum()),
                     "load_avg": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
                     "run_set_s (cells/pairs/rule/evidence)": "/".join(f"{v:.1f}" for v in r.seconds.values()),
                     "target": "<= 60 s, decisions equal exact >= 0.99" if n >= 1_000_000 else ""})
        del emb
    return rows


def smooth_thumbs(n: int, seed: int = 0) -> np.ndarray:
    from synthgen.memorisation import THUMB

    rng = np.random.default_rng(seed)
    g = np.linspace(0, 3, THUMB)
    lo, w = np.floor(g).astype(int).clip(0, 2), g - np.floor(g).clip(0, 2)
    m = np.zeros((THUMB, 4), np.float32)
    m[np.arange(THUMB), lo] = 1 - w
    m[np.arange(THUMB), lo + 1] += w  # bilinear 4 -> 16
    out = np.empty((n, THUMB, THUMB), np.float32)
    for s in range(0, n, 100_000):
        k = min(n, s + 100_000) - s
        x = np.einsum("ij,njk,lk->nil", m, rng.standard_normal((k, 4, 4), dtype=np.float32), m)
        x += 0.15 * rng.standard_normal(x.shape, dtype=np.float32)
        x -= x.mean(axis=(1, 2), keepdims=True)
        out[s : s + k] = x / (x.std(axis=(1, 2), keepdims=True) + 1e-6)
    return out


def _baseline_candidates(thumbs: np.ndarray, images) -> tuple[float, float]:
    """The previous guard's candidate search, bare: nine shifted 256-d queries per image into an IVF over the
    full thumbnails (nlist sqrt(n), calibrated at cosine 0.9). Returns (build s, ms per image) of the search alone."""
    from synthgen.index import build_index
    from synthgen.memorisation import THUMB, _unit_rows, standardise

    n = len(thumbs)
    t0 = time.perf_counter()
    index = build_index(_unit_rows(thumbs.reshape(n, -1)), exact_limit=20_000, threshold=0.9,
                        nlist=max(1, round(np.sqrt(n))))
    build_s = time.perf_counter() - t0
    q = np.stack([standardise(im, THUMB) for im in images])
    v = np.stack([np.roll(q, (-dy, -dx), axis=(1, 2)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1)
    v = _unit_rows(v.reshape(-1, THUMB * THUMB))
    index.search(v[: 64 * 9], 8)
    t0 = time.perf_counter()
    for s in range(0, len(v), 64 * 9):
        index.search(v[s : s + 64 * 9], 8)
    return build_s, 1000 * (time.perf_counter() - t0) / len(images)


def _to8(a):
    return np.clip(128 + 40 * a, 0, 255).astype(np.uint8)


def measure_guard(guard, copies, src, fresh, source_thumbs) -> dict:
    """Time ``guard.nearest`` over the copies (of real rows at positions ``src``) then the fresh images, batches of 64.

    ``source_thumbs``: each copy's source thumbnail, for the exact ceiling (the share of copies whose
    exact distance to their own source is within the threshold).
    """
    from synthgen.memorisation import THUMB, copy_distance, standardise

    images = copies + fresh
    guard.nearest(images[:64])  # warm-up: first touches of the mapped pages
    t0 = time.perf_counter()
    got = []
    for s in range(0, len(images), 64):
        got.append(guard.nearest(images[s : s + 64]))
    per_image_ms = 1000 * (time.perf_counter() - t0) / len(images)
    dists = [d for g in got for d in g[0]]
    found = [nid for g in got for nid in g[1]]
    return {
        "ms_per_image": per_image_ms,
        "recall_copies": float(np.mean([f == guard.ids[i] and d <= 0.24 for f, d, i in zip(found, dists, src)])),
        "copies_within_threshold (exact ceiling)": float(np.mean(
            [copy_distance(standardise(c, THUMB), t) <= 0.24 for c, t in zip(copies, source_thumbs)])),
        "fresh_blocked": float(np.mean([d <= 0.24 for d in dists[len(copies):]])),
    }


def part_guard(sizes, queries: int = 512, baseline: bool = True):
    from PIL import Image

    from catalog.guard import read_guard_files, write_guard_files
    from synthgen.index import describe
    from synthgen.memorisation import build_thumb_index

    rows = []
    for n in sizes:
        load0 = os.getloadavg()[0]
        thumbs = smooth_thumbs(n)
        ids = [f"r{i}" for i in range(n)]
        t0 = time.perf_counter()
        index = build_thumb_index(thumbs)
        build_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
            write_guard_files(Path(tmp), ids, thumbs, index, "sha")
            del index
            t0 = time.perf_counter()
            guard = read_guard_files(Path(tmp), "sha")
            load_s = time.perf_counter() - t0
            rng = np.random.default_rng(5)
            src = rng.choice(n, queries // 2, replace=False)
            copies = [Image.fromarray(_to8(0.8 * np.roll(thumbs[i], 1, axis=1)
                                           + 0.05 * rng.standard_normal(thumbs[i].shape))) for i in src]
            fresh = [Image.fromarray(_to8(t)) for t in smooth_thumbs(queries - len(copies), seed=9)]
            measured = measure_guard(guard, copies, src, fresh, [thumbs[i] for i in src])
            c = describe(guard.index)
            rows.append({"part": "guard", "n": n, "index": f"{c.kind} 64-d nlist={c.nlist} nprobe={c.nprobe}",
                         "build_s (ingest, once)": build_s, "load_s": load_s, **measured,
                         "load_avg": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
                         "target": "<= 1 ms/image, load <= 10 s" if n >= 1_000_000 else ""})
        del guard
        if baseline:
            load0 = os.getloadavg()[0]
            b_build, b_ms = _baseline_candidates(thumbs, copies + fresh)
            rows.append({"part": "guard", "n": n, "index": "previous: 9 x 256-d IVF searches (bare baseline)",
                         "build_s (ingest, once)": b_build, "ms_per_image": b_ms,
                         "ratio (this / baseline)": measured["ms_per_image"] / b_ms,
                         "load_avg": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
                         "note": "candidate search only, no scoring"})
        del thumbs
    return rows


SIDE = 64  # px of the ingested real images: 4 x the guard's 16-px thumbnail


def real_files(folder: Path, n: int) -> Path:
    """``n`` distinct smooth 64-px grayscale JPEGs (q95) in 10 class folders, kept between runs."""
    from PIL import Image

    done = folder / f".complete-{n}"
    if done.exists():
        return folder
    for s in range(0, n, 100_000):
        last = min(n, s + 100_000) - 1
        if (folder / f"c{last % 10}" / f"{last:07d}.jpg").exists():  # a chunk an earlier, stopped run finished
            continue
        thumbs = smooth_thumbs(min(n, s + 100_000) - s, seed=1 + s // 100_000)
        for j, t in enumerate(thumbs):
            i = s + j
            d = folder / f"c{i % 10}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_to8(t)).resize((SIDE, SIDE), Image.BILINEAR).save(d / f"{i:07d}.jpg", quality=95)
    done.touch()
    return folder


def part_guard_ingested(sizes, root: Path, queries: int = 512):
    """The guard built by ``ingest_folder`` (stub embeddings) over ``n`` real JPEG files, then queried.

    Copies are made from the real files themselves (shifted one thumbnail pixel, dimmed, noisy), so
    nothing is planted in the guard: its thumbnails and index are what an ingest stores.
    """
    import json

    from PIL import Image

    from catalog import Catalog, open_version
    from catalog.guard import load_guard
    from catalog.version import read_rows
    from synthgen.index import describe

    rows = []
    for n in sizes:
        load0 = os.getloadavg()[0]
        folder = real_files(root / f"guard-{n // 1000}k", n)
        work = root / f"guard-work-{n}"
        subprocess.run(["rm", "-rf", str(work)], check=True)
        proc = subprocess.run([sys.executable, str(Path(__file__).parent / "bench_ingest.py"), "--child", "ingest",
                               str(folder), str(work), "1"], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode:
            raise SystemExit(f"ingest of {n} failed:\n{proc.stderr[-3000:]}")
        ingest = json.loads(proc.stdout.strip().splitlines()[-1])
        version = open_version(Catalog(work / "catalog"), "real", allow_restricted=True)
        t0 = time.perf_counter()
        guard = load_guard(version)
        load_s = time.perf_counter() - t0
        if guard is None:
            raise SystemExit("the ingest stored no guard")
        rng = np.random.default_rng(5)
        src = rng.choice(n, queries // 2, replace=False)
        t = read_rows(version, ["sample_id", "source_path"], "kept", None)
        path_of = dict(zip(t["sample_id"].to_pylist(), t["source_path"].to_pylist()))
        shift = SIDE // 16
        copies = []
        for i in src:
            a = np.asarray(Image.open(folder / path_of[guard.ids[i]]).convert("L"), np.float32)
            a = np.concatenate([a[:, :1].repeat(shift, axis=1), a[:, :-shift]], axis=1)  # shifted, edge repeated
            a = 0.8 * (a - 128) + 128 + 2 * rng.standard_normal(a.shape)
            copies.append(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)))
        fresh = [Image.fromarray(_to8(x)).resize((SIDE, SIDE), Image.BILINEAR)
                 for x in smooth_thumbs(queries - len(copies), seed=99)]
        measured = measure_guard(guard, copies, src, fresh, [guard.thumbs[i] for i in src])
        c = describe(guard.index)
        rows.append({"part": "guard (ingested)", "n": n, "index": f"{c.kind} 64-d nlist={c.nlist} nprobe={c.nprobe}",
                     "ingest_s (stub embeddings, guard built)": ingest["wall_s"], "ingest_img_s": ingest["img_s"],
                     "ingest_peak_rss_mb": ingest["peak_rss_mb"], "ingest_written_per_final": ingest["written"] / ingest["final"],
                     "load_s": load_s, **measured,
                     "load_avg": f"{load0:.1f}-{os.getloadavg()[0]:.1f}",
                     "target": "<= 1 ms/image, load <= 10 s" if n >= 1_000_000 else ""})
        del guard, version
        subprocess.run(["rm", "-rf", str(work)], check=True)
    return rows


_ORDER = """
import sys
from catalog import Catalog, open_version
ds = open_version(Catalog(sys.argv[1]), "big").to_torch_iterable(seed=3)
ds.set_epoch(2)
print(",".join(sid for _, _, sid in ds))
print(",".join(str(hash(f) & 0xFFFF) for f in ds.files))
"""


def part_loader():
    from catalog import Catalog, samples_to_table
    from tests.conftest import make_samples

    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(tmp)
        cat.create("big", "synthetic")
        with cat.lock("big"):
            cat.commit("big", [cat.write_shard("big", samples_to_table(make_samples(50, start=s * 100))) for s in range(8)])
        outs = []
        for seed in ("11", "22"):
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            outs.append(subprocess.run([sys.executable, "-c", _ORDER, tmp], env=env, capture_output=True, text=True,
                                       check=True).stdout.splitlines())
    return [{"part": "loader", "n": 400, "index": "CRC-seeded (this loader)", "identical_across_processes": outs[0][0] == outs[1][0]},
            {"part": "loader", "n": 400, "index": "hash(path) seeds (bare baseline)",
             "identical_across_processes": outs[0][1] == outs[1][1]}]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", default="all", choices=["decide", "guard", "guard-ingested", "loader", "all"])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--exact-n", type=int, default=20_000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-baseline", action="store_true", help="guard: skip the previous method's search")
    ap.add_argument("--root", default="/tmp/scale-bench", help="guard-ingested: where the real JPEGs are kept")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    t0 = time.perf_counter()
    rows = []
    if a.part in ("loader", "all"):
        rows += part_loader()
    if a.part in ("decide", "all"):
        rows += part_decide(sizes, a.exact_n)
    if a.part in ("guard", "all"):
        rows += part_guard(sizes, baseline=not a.no_baseline)
    if a.part == "guard-ingested":
        rows += part_guard_ingested(sizes, Path(a.root))
    name = "scale" if a.part == "all" else f"scale_{a.part}"
    emit(name, f"Scale: {a.part} at {a.sizes} (2-core shared machine)", rows,
         {"params": vars(a), "threshold": THRESHOLD, "total_s": time.perf_counter() - t0}, a.json)


if __name__ == "__main__":
    main()
