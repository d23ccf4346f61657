"""Prompt expansion with a tiny random GPT-2: more templates, written once into a spec that runs without it."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli.app import app
from synthgen.plan import make_plan
from synthgen.prompt_expansion import ExpansionError, expand_spec, load_text_model
from synthgen.spec import load_spec, parse_spec
from tests.conftest import small_job
from tests.synthgen.test_prompts import program_job
from tests.tiny_gpt2 import build_tiny_gpt2


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return load_text_model(build_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2"))


def test_expansion_writes_more_templates_deterministically_and_keeps_the_balance(text_model):
    spec = parse_spec(program_job(per_class=12))
    expanded = expand_spec(spec, text_model, per_template=2, max_new_tokens=8)
    again = expand_spec(spec, load_text_model(text_model.model), per_template=2, max_new_tokens=8)
    assert expanded.canonical_json() == again.canonical_json()  # same model, same prompts: a rerun is the same job
    record = expanded.conditioning.prompt_expansion
    assert record.weights_sha256 == text_model.weights_sha256 and record.per_template == 2
    base = "a photo of a {name}, {lighting}, {view}"
    lists = [templates for _, templates in expanded.conditioning.templates()]
    assert sum(len(t) - 1 for t in lists) == record.added and all(len(t) == 3 for t in lists)
    for templates in lists:  # the original first, then its continuations: every attribute slot kept
        assert templates[0] == base and all(t.startswith(base + ", ") and "{" not in t[len(base):] for t in templates[1:])
    plan = make_plan(expanded)
    for cls in ("zero", "one", "seven"):
        counts = Counter(s.prompt_template for s in plan if s.class_name == cls)
        assert max(counts.values()) - min(counts.values()) <= 1
    assert expanded.digest() != spec.digest()  # the prompts are part of the new job's identity


def test_the_cli_writes_a_spec_that_runs_without_the_model(text_model, tmp_path):
    source = tmp_path / "job.yaml"
    spec = program_job()
    spec["conditioning"].pop("classes")
    spec["conditioning"]["prompts"] = ["tabby cat", "golden retriever"]
    source.write_text(yaml.safe_dump(spec))
    out = tmp_path / "expanded.yaml"
    result = CliRunner().invoke(app, ["expand-prompts", str(source), "--model", text_model.model, "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = load_spec(out)  # a plain spec: loading it needs no text model
    assert written.conditioning.prompts[:2] == ["tabby cat", "golden retriever"]
    assert len(written.conditioning.prompts) == 2 + written.conditioning.prompt_expansion.added > 2
    assert written == expand_spec(load_spec(source), text_model)
    again = CliRunner().invoke(app, ["expand-prompts", str(source), "--model", text_model.model, "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_folder_that_is_not_a_model_or_a_class_job_without_templates_is_a_clear_error(text_model, tmp_path):
    with pytest.raises(ExpansionError, match="not a local model folder"):
        load_text_model(tmp_path)
    with pytest.raises(ExpansionError, match="prompt_template"):
        expand_spec(parse_spec(small_job()), text_model)
