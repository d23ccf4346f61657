"""`synthgen sweep`: run a small probe per setting of a grid, measure each against the job's real set, pick one."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.common import GENERATE, app, cli_paths, err, fail, failing_on, open_catalog, print_json
from flows.cli.output import print_rows, say
from flows.cli.paths import output_folder

GRID_HELP = ("A field and its values: --grid generator.guidance_scale=1,1.5,2 (repeatable; every combination "
             "is a setting; values are YAML).")
RULE_HELP = ("Threshold MEASURE=VALUE (repeatable). Measures: agreement, precision, recall, coverage, frechet, "
             "diversity, diversity_min, tstr_ratio, tstr, images_per_s, denoiser_passes. Given any --min or --max, they replace "
             "the defaults (agreement>=0.98, coverage>=0.8, diversity>=0.8).")


def _bounds(items: list[str] | None, flag: str) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            fail(f"{flag} {item!r}: expected MEASURE=NUMBER, e.g. {flag} coverage=0.8")
        if not sep:
            fail(f"{flag} {item!r}: expected MEASURE=NUMBER, e.g. {flag} coverage=0.8")
    return out


@app.command(rich_help_panel=GENERATE)
def sweep(
    spec: Path = typer.Argument(..., help="Job spec YAML (its dedup.real_dataset is the real set measured against)."),
    grid: list[str] = typer.Option(None, "--grid", help=GRID_HELP),
    per_setting: int = typer.Option(200, "--per-setting", help="Images per probe (spread over the classes/prompts)."),
    classifier: str = typer.Option(
        None, "--classifier", help="Class agreement by your model, MODULE:FUNCTION: FUNCTION(names) returns a "
                                   "function from a list of PIL images to one name per image (default: zero-shot "
                                   "with the job's embedder)."),
    minimum: list[str] = typer.Option(None, "--min", help=RULE_HELP),
    maximum: list[str] = typer.Option(None, "--max", help="Upper threshold MEASURE=VALUE (repeatable), e.g. frechet=0.1."),
    best: str = typer.Option("tstr_ratio", "--best", help="Among settings meeting every threshold, the best of this "
                                                          "measure (highest; lowest for frechet and denoiser_passes)."),
    out_dir: str = typer.Option(None, "--out", help="Folder for sweep.json, sweep.md, sweep.png and chosen.yaml "
                                                    "(default: <data>/sweeps/<job name>)."),
    assignments: list[str] = typer.Option(None, "--set", help="Override a spec field first: --set seed=3 (repeatable)."),
    json_out: bool = typer.Option(False, "--json", help="Print the sweep as JSON (the content of sweep.json)."),
) -> None:
    """Probe every setting of a grid, each as the version of its own scratch dataset (<dataset>-sweep-<key>), measure it
    against the job's real set, pick one by a rule; write the table, plot, JSON and chosen spec; log MLflow runs."""
    from pydantic import ValidationError

    from catalog import CatalogError
    from flows.job.sweep import SweepError, check_sweep, class_names, load_classifier, plan_sweep, scratch_dataset
    from synthgen.spec import SpecError, load_spec, parse_assignments
    from synthgen.sweep import GridError, Rule, parse_grid

    # Everything is checked before anything runs: the spec, every setting, the rule, the catalog, the classifier.
    with failing_on(SpecError, GridError, SweepError, CatalogError):
        job = load_spec(spec, parse_assignments(assignments or []))
        settings = parse_grid(grid or [])
        probes = plan_sweep(job, settings, per_setting)
    try:
        rule = Rule(best=best) if not (minimum or maximum) else Rule(
            minimum=_bounds(minimum, "--min"), maximum=_bounds(maximum, "--max"), best=best)
    except ValidationError as exc:
        fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
    folder = output_folder(out_dir or str(cli_paths(resolve_only=True).root / "sweeps" / job.name), "--out")
    cat = open_catalog()
    with failing_on(SweepError, CatalogError):
        check_sweep(probes, cat)
        model = load_classifier(classifier, class_names(job)) if classifier else None

    from flows.sweep import run_sweep

    paths = cli_paths()
    err.print(f"[bold]synthgen sweep[/] {job.name}: {len(probes)} settings x {probes[0].spec.total_images} images "
              f"-> {scratch_dataset(job)}-* (rule: {rule.describe()})")

    def show(i, r) -> None:
        m = r.measures
        err.print(f"  [{i + 1}/{len(probes)}] {r.probe.setting.label}: {r.ref}{' (reused)' if r.reused else ''}, "
                  f"agreement {m.agreement if m.agreement is None else round(m.agreement, 3)}, "
                  f"tstr ratio {m.tstr_ratio if m.tstr_ratio is None else round(m.tstr_ratio, 3)}")

    with failing_on(SweepError):
        outcome = run_sweep(probes, rule, paths, folder, per_setting, model, classifier, on_probe=show)
    if json_out:
        print_json(outcome.to_json())
    else:
        head, rows = outcome.table()
        print_rows(f"sweep of {job.name} ({outcome.classifier}; rule: {rule.describe()})", head, rows)
        chosen = outcome.results[outcome.chosen].probe.setting.label if outcome.chosen is not None else None
        say(f"chosen: {chosen or 'none (no setting met every threshold)'}")
        for name, path in outcome.files.items():
            say(f"{name}: {path}")
    if outcome.chosen is None:
        raise typer.Exit(1)
