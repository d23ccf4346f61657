"""``synthgen sweep``'s shell: one MLflow parent run, a child run per probe, then the files.

The probes run through the job's data path (``flows.job.sweep.run_probe`` ->
``run_job``) in this process, one after another: a probe is small and the
sampler is one device, so there is nothing to overlap or schedule (no
Prefect here). Each child run gets the setting as params, its measures and
the probe version's quality metrics, and the probe's dataset card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from catalog import Catalog
from catalog.card import write_card
from flows.job.sweep import Classifier, Probe, ProbeResult, run_probe, scratch_dataset
from flows.outputs.sweep_files import SweepOutcome, write_files
from flows.settings import Paths
from flows.tracking import Tracker
from synthgen.sweep import Rule, choose


def _axes(probes: list[Probe]) -> dict[str, str]:
    """The grid as params: each field and its values (one param per field; dots would nest them)."""
    axes: dict[str, list] = {}
    for p in probes:
        for key, value in p.setting.assignments.items():
            if value not in axes.setdefault(key, []):
                axes[key].append(value)
    return {key.replace(".", "/"): ",".join(map(str, values)) for key, values in axes.items()}


def run_sweep(probes: list[Probe], rule: Rule, paths: Paths, out_dir: Path, per_setting: int,
              classifier: Classifier | None = None, classifier_name: str | None = None,
              on_probe: Callable[[int, ProbeResult], None] | None = None) -> SweepOutcome:
    """Run every probe under one MLflow parent run, choose a setting by ``rule``, write the files."""
    catalog = Catalog(paths.catalog, cache=paths.cache)
    job = probes[0].full
    tracker = Tracker(paths.tracking_uri, paths.artifact_root)
    tracker.start_run(f"{job.name}-sweep", {
        "grid": _axes(probes), "settings": len(probes), "per_setting": per_setting,
        "rule": rule.describe(), "classifier": classifier_name or "zero-shot"},
        {"synthgen.sweep": "parent", "synthgen.job_digest": job.digest()})
    try:
        results, shared = [], {}  # the embedder and guard, loaded once for every probe
        for i, probe in enumerate(probes):
            child = tracker.child(probe.setting.label, probe.setting.assignments,
                                  {"synthgen.sweep": "probe", "synthgen.job_digest": probe.spec.digest()})
            try:
                r = run_probe(probe, paths, catalog, classifier, shared)
                child.log_metrics({k: v for k, v in r.measures.to_dict().items() if v is not None}
                                  | r.report.metrics())
                child.log_artifact(write_card(catalog, r.ref, r.report))
                child.set_tags({"synthgen.dataset": r.ref, "synthgen.reused_version": str(r.reused)})
                child.end("FINISHED")
            except BaseException:
                child.end("FAILED")
                raise
            results.append(r)
            if on_probe:
                on_probe(i, r)
        chosen = choose([r.measures for r in results], rule)
        outcome = SweepOutcome(job.name, scratch_dataset(job) + "-*", per_setting,
                               classifier_name or f"zero-shot ({results[0].report.embedding_model})", rule, results,
                               chosen)
        files = write_files(outcome, out_dir)
        for path in files.values():
            tracker.log_artifact(path)
        tracker.set_tags({"synthgen.sweep.chosen": results[chosen].probe.setting.label if chosen is not None else "none"})
        if chosen is not None:
            tracker.log_metrics({"chosen_index": chosen})
        tracker.end("FINISHED")
        return outcome
    except BaseException:
        tracker.end("FAILED")
        raise
