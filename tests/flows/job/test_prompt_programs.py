"""Prompt programs on the tiny Stable Diffusion: rows record and balance their attributes; query, search,
the card and regeneration read them."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version
from catalog.card import render_card
from flows.cli.app import app
from flows.job.regenerate import regenerate_sample_check
from flows.job.run import run_job
from tests.tiny_sd import build_tiny_sd

LIGHTING, VIEW = ["dawn", "noon", "dusk"], ["front", "side"]
PER_CLASS = 7  # not a multiple of 3 or 2: balance within one, not equality, is what is checked


@pytest.fixture(scope="module")
def program_run(tmp_path_factory):
    """One tiny-SD class job with a template, two attributes and one class's own prompt list."""
    root = tmp_path_factory.mktemp("prompt-program")
    spec = {
        "name": "pets-program",
        "generator": {"model": str(build_tiny_sd(root / "sd")), "steps": 2, "batch_size": 8, "height": 32,
                      "width": 32},
        "conditioning": {
            "classes": [{"id": 0, "name": "cat"},
                        {"id": 1, "name": "dog", "prompts": ["a {name} in a park, {lighting}, {view}",
                                                             "a {name} on a sofa, {lighting}, {view}"]}],
            "prompt_template": "a photo of a {name}, {lighting}, {view}",
            "attributes": {"lighting": LIGHTING, "view": VIEW},
            "negative_prompt": "blurry",
        },
        "images_per_condition": PER_CLASS,
        "output": {"dataset": "pets-program", "shard_size": 8},
    }
    run_job(spec, root / "data")
    cat = Catalog(root / "data" / "catalog")
    rows = open_version(cat, "pets-program").table(["label", "label_name", "prompt", "negative_prompt",
                                                    "prompt_template", "prompt_attributes", "clip_score", "status"],
                                                   status="all").to_pylist()
    return {"data": root / "data", "catalog": cat, "rows": rows}


def cli(data, *args) -> str:
    result = CliRunner().invoke(app, ["--data-dir", str(data), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_rows_record_their_template_and_attributes_balanced_within_one_per_class(program_run):
    rows = program_run["rows"]
    assert len(rows) == 2 * PER_CLASS
    for cls in ("cat", "dog"):
        mine = [r for r in rows if r["label_name"] == cls]
        attrs = [json.loads(r["prompt_attributes"]) for r in mine]
        for name, values in (("lighting", LIGHTING), ("view", VIEW)):
            counts = Counter(a[name] for a in attrs)
            assert max(counts[v] for v in values) - min(counts[v] for v in values) <= 1, (cls, name, counts)
        for r, a in zip(mine, attrs):
            assert r["prompt"] == r["prompt_template"].format(name=cls, **a)  # the prompt actually used
            assert r["negative_prompt"] == "blurry" and r["clip_score"] is not None
    dog_templates = Counter(r["prompt_template"] for r in rows if r["label_name"] == "dog")
    assert sorted(dog_templates.values()) == [3, 4]  # the class's own list, balanced the same way
    assert {r["label"] for r in rows if r["label_name"] == "cat"} == {0}  # the class id stays the label


def test_query_groups_by_attribute_and_card_and_search_break_quality_down(program_run):
    out = cli(program_run["data"], "query", "SELECT label_name, prompt_attributes->>'lighting' AS lighting, "
              "count(*) AS n FROM pets_program_all GROUP BY ALL ORDER BY ALL")
    assert "(6 rows)" in out and all(v in out for v in LIGHTING)
    card = render_card(program_run["catalog"], "pets-program")
    section = card.split("## Rows by prompt attribute")[1].split("\n## ")[0]
    table = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ") and "attribute" not in line]
    assert sorted((a.strip(), v.strip()) for a, v, *_ in table) == sorted(
        [("lighting", v) for v in LIGHTING] + [("view", v) for v in VIEW])
    rows = program_run["rows"]
    for a, v, kept, mean, total in table:  # each value's kept count and mean clip_score, from the rows
        mine = [r for r in rows if json.loads(r["prompt_attributes"])[a.strip()] == v.strip()]
        scores = [r["clip_score"] for r in mine if r["status"] == "kept"]
        assert (int(total), int(kept)) == (len(mine), len(scores))
        assert float(mean) == pytest.approx(sum(scores) / len(scores), abs=1e-4)
    out = cli(program_run["data"], "search", "pets-program", "a photo of a cat at dusk", "--k", "4",
              "--where", "prompt_attributes->>'view' = 'side'")
    assert out.count("view=side") == 4 and "view=front" not in out and "hits by prompt attribute" in out


def test_regeneration_draws_each_rows_prompt_again(program_run):
    result = regenerate_sample_check(program_run["catalog"], "pets-program", 4)
    assert result.checked == 4 and result.matched == 4
