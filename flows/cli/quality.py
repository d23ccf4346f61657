"""`synthgen quality`: a version's fidelity and diversity against its real data, or two side by side."""

from __future__ import annotations

import json

import typer

from flows.cli.common import INSPECT, open_catalog, fail, app, failing_on
from flows.cli.output import print_rows, say


def _fmt(v) -> str:
    return "-" if v is None else f"{v:+.3f}" if isinstance(v, float) and v < 0 else f"{v:.3f}" if isinstance(v, float) else str(v)


@app.command(rich_help_panel=INSPECT)
def quality(
    refs: list[str] = typer.Argument(..., help="NAME@VERSION; give two to compare them side by side."),
    real: str = typer.Option(None, "--real", help="Real reference NAME or NAME@V (default: the job's dedup.real_dataset, head)."),
    k: int = typer.Option(5, "--k", help="k of the k-NN balls."),
    max_samples: int = typer.Option(5000, "--max-samples", help="Sample each set down to this many rows."),
    max_per_group: int = typer.Option(1000, "--max-per-group", help="The same, per class or prompt."),
    seed: int = typer.Option(0, "--seed", help="Seed of the samples drawn (recorded in the report)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report(s) as JSON."),
) -> None:
    """Precision, recall, density, coverage, Frechet distance and diversity ratio, from stored embeddings."""
    from pydantic import ValidationError

    from catalog import CatalogError
    from catalog.quality import version_quality
    from synthgen.quality import QualityConfig
    from synthgen.quality_report import side_by_side

    if len(refs) > 2:
        fail(f"give one version, or two to compare; got {len(refs)}")
    try:
        cfg = QualityConfig(k=k, max_samples=max_samples, max_per_group=max_per_group, seed=seed)
    except ValidationError as exc:
        fail("; ".join(f"--{e['loc'][0].replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    cat = open_catalog()
    with failing_on(CatalogError):
        reports = [version_quality(cat, ref, real, cfg) for ref in refs]
    if len(reports) == 1:
        if json_out:
            print(reports[0].dumps())
        else:
            say(reports[0].to_markdown())
        return
    a, b = reports
    rows = side_by_side(a, b)
    if json_out:
        diff = [{"score": name, "a": va, "b": vb, "b_minus_a": d} for name, va, vb, d in rows]
        print(json.dumps({"a": a.to_json(), "b": b.to_json(), "side_by_side": diff}, indent=2))
        return
    print_rows(f"{a.ref} (vs {a.reference or '-'})  |  {b.ref} (vs {b.reference or '-'});  k={cfg.k}, seed {cfg.seed}",
               ("class / prompt . score", a.ref, b.ref, "B - A"),
               [(name, _fmt(va), _fmt(vb), _fmt(d)) for name, va, vb, d in rows])
