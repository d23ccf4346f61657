"""`synthgen expand-prompts`: a local text model writes more templates into a new job spec (optional, once)."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from flows.cli.common import GENERATE, app, failing_on
from flows.cli.output import say
from flows.cli.paths import output_file


@app.command("expand-prompts", rich_help_panel=GENERATE)
def expand_prompts(
    spec_path: Path = typer.Argument(..., help="The job spec (YAML) whose templates are expanded."),
    model: str = typer.Option(..., "--model", help="A local folder for transformers' text-generation pipeline."),
    out: str = typer.Option(..., "--out", help="The new spec (.yaml; must not exist): run it like any spec."),
    per_template: int = typer.Option(1, "--per-template", min=1, max=64,
                                     help="New templates per template (1: greedy; more: beam search)."),
    max_new_tokens: int = typer.Option(16, "--max-new-tokens", min=1, max=512, help="Length of each continuation."),
) -> None:
    """Write a spec with more templates from a local text model; the new spec runs offline without the model."""
    from catalog.atomic import atomic_write
    from synthgen.prompt_expansion import ExpansionError, expand_spec, load_text_model
    from synthgen.spec import SpecError, load_spec

    target = output_file(out, "--out", ".yaml", replace=False)  # checked before any model loads
    with failing_on(SpecError, ExpansionError):
        spec = load_spec(spec_path)
        expanded = expand_spec(spec, load_text_model(model), per_template, max_new_tokens)
    text = yaml.safe_dump(expanded.model_dump(mode="json", exclude_defaults=True), sort_keys=False,
                          allow_unicode=True)
    atomic_write(target, text.encode("utf-8"), exclusive=True)
    record = expanded.conditioning.prompt_expansion
    say(f"wrote {target}: {record.added} templates added by {model} (weights sha256 {record.weights_sha256[:12]})")
