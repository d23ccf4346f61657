"""Prompt programs: what a balanced attribute walk costs the plan, and how balanced it is.

Plans the same class job (3 classes) with and without a prompt program (a
template with two attributes of 3 and 4 values, shared factors with the
template count of one class's own 2-template list), and reports plan time per
sample, the ratio to the plain plan in the same run, and the largest spread of
any attribute value's count within a class (the contract: at most 1) at every
prefix checked. No model is loaded: the plan is pure Python.

    python bench/bench_prompts.py [--per-class 100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.report import emit
from synthgen.plan import make_plan
from synthgen.spec import parse_spec

CLASSES = [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"},
           {"id": 2, "name": "fox", "prompts": ["a {name} in snow, {lighting}, {view}", "a {name}, {lighting}, {view}"]}]


def job(per_class: int, program: bool) -> dict:
    cond: dict = {"classes": [{k: v for k, v in c.items() if program or k != "prompts"} for c in CLASSES]}
    if program:
        cond.update(prompt_template="a photo of a {name}, {lighting}, {view}",
                    attributes={"lighting": ["dawn", "noon", "dusk"], "view": ["front", "side", "back", "top"]})
    return {"name": "bench-prompts", "generator": {"model": "some/text-model" if program else "embedded:digits"},
            "conditioning": cond, "images_per_condition": per_class, "output": {"dataset": "bench-prompts"}}


def worst_spread(plan, checkpoints: set[int]) -> int:
    """The largest (max - min) count of any axis's values within a class, over the given prefix sizes.

    A value not drawn yet counts 0, so the number of values per axis is read from the spec's classes.
    """
    sizes = {"lighting": 3, "view": 4}
    worst, counts, seen = 0, {}, Counter()
    for s in plan:
        seen[s.class_name] += 1
        axes = {"template": s.prompt_template, **(s.prompt_attributes or {})}
        for axis, value in axes.items():
            counts.setdefault((s.class_name, axis), Counter())[value] += 1
        if seen[s.class_name] in checkpoints:
            templates = len(next(c.get("prompts", [0]) for c in CLASSES if c["name"] == s.class_name))
            for axis in axes:
                c = counts[(s.class_name, axis)]
                n = sizes.get(axis, templates)
                worst = max(worst, max(c.values()) - (min(c.values()) if len(c) == n else 0))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=100_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows, plans = [], {}
    for program in (False, True):
        spec = parse_spec(job(args.per_class, program))
        t0 = time.perf_counter()
        plans[program] = make_plan(spec)
        dt = time.perf_counter() - t0
        rows.append({"plan": "program" if program else "plain", "samples": spec.total_images,
                     "seconds": dt, "us_per_sample": 1e6 * dt / spec.total_images})
    rows[1]["ratio_to_plain"] = rows[1]["seconds"] / rows[0]["seconds"]
    checkpoints = {*range(1, 100), *range(100, args.per_class + 1, 997), args.per_class}
    rows[1]["worst_spread_within_class"] = worst_spread(plans[True], checkpoints)
    emit("prompts", "Plan with a prompt program vs plain, same run", rows,
         {"per_class": args.per_class, "checkpoints": len(checkpoints)}, args.json)


if __name__ == "__main__":
    main()
