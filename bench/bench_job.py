"""A whole job at 2k and 20k images, 256 px: wall time, peak RSS, lock held, bytes written / final bytes.

Each size runs in a fresh subprocess through ``flows.job.run.run_job``
(the in-process executor, the driver's ordered decisions, the commit; no
Prefect, no MLflow). The generator is the embedded digits model with its
sampler replaced by precomputed 256-px photo-like images (each sample a
different crop offset and tint of one of 256 bases, so rows differ); every
other stage is the real one (PNG encode, pixel hash, embedded CLIP, scores,
rules, dedup), against a first version of the dataset (so there is a parent
to decide against). What is measured, per job:

* ``s_per_image``: wall time of the job (all shards, then the commit) / images;
  ``bare_s_per_image``: the same stages over one shard's samples (1,000)
  with no catalog (no decisions, no writes), in the same process, before
  the job: the baseline;
* ``peak_rss_mb``: ``ru_maxrss`` of the subprocess;
* ``lock_max_s`` / ``lock_total_s``: how long the dataset lock was held
  (``Catalog(on_lock_held=...)``: every time the commit took it);
* ``parquet_written_mb``: Parquet bytes written to the job's staging folder
  and the dataset's ``shards/`` (every file created there during the job,
  final or not; staged files are counted before the commit removes them);
  ``final_mb``: bytes of the shards the new version lists;
  ``bytes_ratio`` = written / final; ``all_writes_ratio``: every byte the
  process passed to write() (``/proc/self/io`` wchar: Parquet, decision
  records, FAISS and id indexes, manifests) / final;
* ``rewritten_shards``: shards written a second time (staged first).

``--order staged`` (at the smallest size) stages every shard undecided
first, as work-pool workers do, then lets ``run_job`` decide them: its
bytes ratio is what a work pool writes (each shard twice).

    python bench/bench_job.py [--sizes 2000 20000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

PX = 256
SHARD = 1000
BARE = 200  # images of the parent version (other images than the job's)


class Precomputed:
    """The embedded generator, its sampling replaced by precomputed images (provenance stays the model's)."""

    def __init__(self, inner, bases: np.ndarray, offset: int = 0):
        self.inner, self.bases, self.offset = inner, bases, offset

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, samples) -> np.ndarray:
        out = []
        for s in samples:
            i = s.plan_index + self.offset
            img = np.roll(self.bases[i % len(self.bases)], (i // len(self.bases)) % PX, axis=1)
            out.append(np.clip(img.astype(np.int16) + (i * 7) % 41 - 20, 0, 255).astype(np.uint8))
        return np.stack(out)


def spec_for(n: int, name: str, seed: int = 0):
    import yaml

    from synthgen.spec import parse_spec

    spec = yaml.safe_load((REPO / "jobs" / "digits-demo.yaml").read_text())
    spec.update(name=f"{name}-job", images_per_condition=n // 10, seed=seed)
    spec["generator"].update(batch_size=100, height=PX, width=PX)
    spec["dedup"] = {"threshold": 0.999, "real_dataset": None}  # random fields look alike to the digits CLIP
    spec["output"] = {"dataset": name, "shard_size": SHARD}
    return parse_spec(spec)


def parquet_bytes(folders: list[Path]) -> dict[str, int]:
    """Parquet files under ``folders`` by file name: a decided shard moved from the job's folder
    into the catalog at the publish (a rename) is the same file, counted once."""
    return {p.name: p.stat().st_size for f in folders if f.is_dir() for p in f.rglob("*.parquet")}


def wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def child(n: int, order: str) -> dict:
    """One job of ``n`` images in this process; returns its measurements."""
    from bench.bench_throughput import photo_like
    from catalog import Catalog, RunRef
    from catalog.schema import samples_to_table
    from flows.job.components import ComponentLoader, Given, with_generator
    from flows.job.provenance import provenance_for
    from flows.job.run import run_job
    from flows.job.shard_step import ShardStep
    from flows.job.staging import Staging
    from flows.settings import configure
    from synthgen.engine import run_stages
    from synthgen.plan import make_plan, make_shards
    from synthgen.stages import shard_stages

    runs = RunRef(prefect_flow_run_id="bench", mlflow_run_id=None)
    bases = photo_like(256, PX)
    with tempfile.TemporaryDirectory() as tmp:
        paths = configure(tmp)
        first = spec_for(BARE, "bench-job", seed=1)  # the parent version the job decides against
        parts = ComponentLoader(first, str(paths.catalog))()
        other = Precomputed(parts.generator, bases, offset=10**6)  # other images than the job's
        run_job(first, paths=paths, runs=runs, setup=Given(with_generator(parts, other)))
        gen = Precomputed(parts.generator, bases)
        setup = Given(with_generator(parts, gen))

        spec = spec_for(n, "bench-job")
        shards = make_shards(spec.total_images, SHARD)
        # baseline: the same stages over one shard's samples, no catalog, no writes
        emb = parts.embedder
        samples = make_plan(spec, 0, SHARD)
        stages = shard_stages(gen, emb, provenance_for(spec, gen, emb, runs), lambda s: s.class_name, None,
                              spec.output.png_compress_level, 2, None)
        t0 = time.perf_counter()
        run_stages(samples, stages, gen.batch_size, None, 2)
        bare = (time.perf_counter() - t0) / SHARD
        del samples

        held: list[float] = []
        catalog = Catalog(paths.catalog, on_lock_held=lambda _name, s: held.append(s))
        folders = [paths.staging, catalog.path("bench-job") / "shards"]
        before = parquet_bytes(folders)
        w0, t0 = wchar(), time.perf_counter()
        if order == "staged":  # as work-pool workers do: every shard staged undecided, then decided by the driver
            step, staging = ShardStep(spec, runs), Staging.of(paths, spec)
            for s in shards:
                staging.stage(s, samples_to_table(step(s, setup()).samples))
        written = {k: v for k, v in parquet_bytes(folders).items() if k not in before}
        report = run_job(spec, paths=paths, runs=runs, setup=setup, catalog=catalog).commit
        wall = time.perf_counter() - t0
        w1 = wchar()
        after = parquet_bytes(folders)
        written |= {k: v for k, v in after.items() if k not in before and k not in written}
        m = catalog.manifest("bench-job", report.version)
        added = set(m.added_shards)
        final = sum(s_.rows and (catalog.path("bench-job") / s_.file).stat().st_size
                    for s_ in m.shards if s_.sha256 in added)
        return {
            "images": n,
            "order": order,
            "kept": report.counts.get("kept", 0),
            "s_per_image": wall / n,
            "bare_s_per_image": bare,
            "over_bare": (wall / n) / bare,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "lock_max_s": max(held) if held else 0.0,
            "lock_total_s": sum(held),
            "lock_takes": len(held),
            "parquet_written_mb": sum(written.values()) / 2**20,
            "final_mb": final / 2**20,
            "bytes_ratio": sum(written.values()) / final,
            "all_writes_ratio": (w1 - w0) / final,
            "rewritten_shards": report.rewritten_shards,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--order", default="plan", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.order)))
        return

    from bench.report import emit

    rows = []
    runs = [(n, "plan") for n in args.sizes] + [(min(args.sizes), "staged")]
    for n, order in runs:
        proc = subprocess.run([sys.executable, __file__, "--child", str(n), "--order", order],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode:
            sys.exit(f"bench child {n} ({order}) failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    plan_rows = [r for r in rows if r["order"] == "plan"]
    small, big = plan_rows[0], plan_rows[-1]
    extra = {"px": PX, "shard_size": SHARD, "rss_ratio_big_over_small": big["peak_rss_mb"] / small["peak_rss_mb"],
             "targets": {"lock_max_s": 2.0, "bytes_ratio": 1.05, "rss_ratio": 1.2},
             "load_avg_1m": os.getloadavg()[0]}
    emit("scale_job", f"A job through the real shard + commit code ({PX} px, stub sampler; "
         f"RSS {big['images']}/{small['images']} = {extra['rss_ratio_big_over_small']:.2f})", rows, extra,
         args.json or str(REPO / "bench" / "results" / "scale_job.json"))


if __name__ == "__main__":
    main()
