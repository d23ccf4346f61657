"""Part B of ``bench_throughput``: ``synthgen run`` vs the bare pipeline loop (tiny SD, 8x VAE, 512 px).

bare, flow, bare, flow, bare: each flow's time after its fixed start-up
(the ``startup_s`` it reports: Prefect's server, MLflow run, model loading)
is divided by the mean of the bare loops on either side of it, because this
shared machine drifts over minutes. The bare loop is the same pipeline,
prompts, seeds, batch, steps and size, with nothing after sampling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PROMPTS = ["a red square", "a blue circle", "a green field", "a grey cat"]


def job(model: Path, clip: Path, per_prompt: int, shard_size: int = 8) -> dict:
    return {
        "name": "bench-sd512", "generator": {"model": str(model), "steps": 4, "guidance_scale": 7.5,
                                             "height": 512, "width": 512, "batch_size": 4, "device": "cpu"},
        "conditioning": {"prompts": PROMPTS}, "images_per_condition": per_prompt, "seed": 7,
        "embedder": {"model": str(clip), "device": "cpu"},
        "output": {"dataset": "bench-sd512", "shard_size": shard_size},
    }


def bare(spec_dict: dict) -> float:
    """The pipeline alone over the same plan: per-sample generators, fixed batches, nothing after."""
    from synthgen.generators import load_generator
    from synthgen.plan import make_plan
    from synthgen.runtime import set_threads
    from synthgen.spec import parse_spec

    spec = parse_spec(spec_dict)
    set_threads(spec.generator.threads)
    gen = load_generator(spec.generator, "text")
    plan = make_plan(spec)
    t0 = time.perf_counter()
    for i in range(0, len(plan), gen.batch_size):
        gen.generate(plan[i : i + gen.batch_size])
    return time.perf_counter() - t0


def flow(spec_dict: dict, tmp: Path, name: str) -> dict:
    """``synthgen run`` in a subprocess, as a user runs it, in a fresh data folder."""
    spec_path, out = tmp / f"{name}.yaml", tmp / f"{name}.json"
    spec_path.write_text(yaml.safe_dump(spec_dict))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "flows.cli", "--data-dir", str(tmp / name), "run", str(spec_path),
                    "--json", str(out)], check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def flow_vs_bare(tmp: Path, per_prompt: int = 16, repeats: int = 3) -> list[dict]:
    """Flow / bare for ``per_prompt`` images of each of the 4 prompts, in two shards.

    64 images by default: a job's fixed finishing costs (commit, card, grids,
    MLflow; ~1.5 s here) are per job, and a real job has hundreds to
    thousands of images (the default shard alone is 250). At 16 images they
    were ~15% of the bare loop's ~7 s; at 64 (~28 s of sampling on this
    machine's CPU) they weigh what they would for ~250 images on a device
    4x faster, and the whole benchmark stays under 5 minutes here.
    """
    from tests.tiny_clip import build_tiny_clip
    from tests.tiny_sd import build_tiny_sd

    images = len(PROMPTS) * per_prompt
    spec = job(build_tiny_sd(tmp / "sd512", vae_levels=4), build_tiny_clip(tmp / "clip-b32", 224, 32), per_prompt,
               shard_size=max(4, images // 2))
    bares, rows = [bare(spec)], []
    for i in range(repeats):
        result = flow(spec, tmp, f"flow{i}")
        bares.append(bare(spec))
        m = result["metrics"]
        rest = m["wall_s"] - m["startup_s"]
        adjacent = (bares[-2] + bares[-1]) / 2
        shards_s = rest - m["commit_s"] - m["finish_s"]  # sampling + post-processing + staging Parquet
        rows.append({"run": i, "images": len(PROMPTS) * per_prompt, "bare_s": adjacent, "flow_after_startup_s": rest,
                     "startup_s": m["startup_s"], "shards_s": shards_s,
                     "not_sampling_s": shards_s - m["sampling_s"],  # in the shards, the sampler not running
                     "commit_s": m["commit_s"], "finish_s": m["finish_s"], "flow_over_bare": rest / adjacent,
                     "shards_over_bare": shards_s / adjacent})
    ratios = sorted(r["flow_over_bare"] for r in rows)
    rows.append({"run": "median", "images": images, "flow_over_bare": ratios[len(ratios) // 2],
                 **{k: sorted(r[k] for r in rows)[len(rows) // 2]
                    for k in ("bare_s", "flow_after_startup_s", "not_sampling_s", "commit_s", "finish_s")}})
    return rows
