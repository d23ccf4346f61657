"""A kept count per class (issue 22): how even the classes come out, and what the plan's rounds cost.

Three jobs on the embedded digits model (10 classes, a dedup threshold that
drops rows), through ``flows.job.run.run_job`` in this process with the models
loaded once:

* ``fixed N``: ``images_per_condition: N``, today's spec: kept rows per class
  come out uneven (dedup drops a varying share);
* ``kept N``: ``kept_per_condition: N``: every class ends with N kept rows (or
  its cap), in rounds that ask each short class for its shortfall;
* ``fixed G/10``: ``images_per_condition`` sized to generate about as many
  images as ``kept N`` did, in one round: the baseline for the rounds' cost.

Each pair is timed in the same run, twice in alternating order; the ratio
``kept N`` / ``fixed G/10`` (wall seconds per generated image) is the rounds'
overhead.

    python bench/bench_kept.py [--per-class 30] [--threshold 0.9] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from catalog import Catalog  # noqa: E402
from catalog.per_condition import condition_counts  # noqa: E402
from catalog.version import open_version  # noqa: E402
from flows.job.components import ComponentLoader, Given  # noqa: E402
from flows.job.run import data_paths, run_job  # noqa: E402
from synthgen.spec import parse_spec  # noqa: E402


def spec(threshold: float, **count) -> dict:
    s = yaml.safe_load((REPO / "jobs" / "digits-demo.yaml").read_text())
    del s["images_per_condition"]
    s.update(count, name="bench-kept")
    s["dedup"].update(threshold=threshold, real_dataset=None)
    s["output"] = {"dataset": "bench-kept", "shard_size": 100}
    return s


def run(job, parts, root: Path) -> dict:
    t0 = time.perf_counter()
    result = run_job(job, root, setup=Given(parts))
    wall = time.perf_counter() - t0
    counts = condition_counts(open_version(Catalog(data_paths(root).catalog), f"{result.dataset}@{result.version}"))
    kept = [r.kept for r in counts.rows]
    generated = sum(r.generated for r in counts.rows)
    return {"generated": generated, "kept_min": min(kept), "kept_max": max(kept), "capped": len(counts.capped),
            "shards": len(result.shards), "wall_s": wall, "s_per_image": wall / generated}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    n = args.per_class
    kept_job = parse_spec(spec(args.threshold, kept_per_condition=n))
    parts = ComponentLoader(kept_job, "/nonexistent")()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kept-") as tmp:
        first = run(parse_spec(spec(args.threshold, images_per_condition=n)), parts, Path(tmp) / "fixed")
        rows.append({"job": f"fixed {n}", **first})
        kept = run(kept_job, parts, Path(tmp) / "kept-0")
        same = parse_spec(spec(args.threshold, images_per_condition=math.ceil(kept["generated"] / 10)))
        for i in range(args.repeats):  # alternate, so load changes hit both
            order = [("kept", kept_job), ("same", same)] if i % 2 else [("same", same), ("kept", kept_job)]
            for name, job in order:
                got = run(job, parts, Path(tmp) / f"{name}-{i + 1}")
                rows.append({"job": f"kept {n}" if name == "kept" else f"fixed {same.images_per_condition} (G/10)",
                             "repeat": i + 1, **got})
    pairs = [(k, s) for i in range(1, args.repeats + 1)
             for k in rows if k.get("repeat") == i and k["job"].startswith("kept")
             for s in rows if s.get("repeat") == i and "(G/10)" in s["job"]]
    ratios = [k["s_per_image"] / s["s_per_image"] for k, s in pairs]
    print("| job | repeat | generated | kept per class (min-max) | capped | shards | wall s | s/image |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['job']} | {r.get('repeat', '-')} | {r['generated']} | {r['kept_min']}-{r['kept_max']} | "
              f"{r['capped']} | {r['shards']} | {r['wall_s']:.2f} | {r['s_per_image']:.4f} |")
    print(f"rounds' overhead (kept / fixed at the same size, s per image): {', '.join(f'{x:.3f}' for x in ratios)}")
    out = REPO / "bench" / "results" / "kept.json"
    out.write_text(json.dumps({"per_class": n, "threshold": args.threshold, "rows": rows, "overhead": ratios,
                               "load": os.getloadavg()}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
