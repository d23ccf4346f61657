"""Prompt programs: balanced attribute walks, the plan's prompts, and the spec's checks."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from synthgen.model_check import ModelCheckError, check_job_models
from synthgen.plan import make_plan
from synthgen.prompts import balanced_digits
from synthgen.spec import SpecError, load_spec, parse_spec
from tests.conftest import REPO, small_job

LIGHTING, VIEW = ["dawn", "noon", "dusk"], ["front", "side", "back", "top"]


def program_job(per_class: int = 11, **conditioning) -> dict:
    spec = small_job(per_class=per_class)
    spec["generator"]["model"] = "some/text-to-image-model"  # the spec does not read the model
    spec["conditioning"].update({"prompt_template": "a photo of a {name}, {lighting}, {view}",
                                 "attributes": {"lighting": LIGHTING, "view": VIEW}, **conditioning})
    return spec


@pytest.mark.parametrize("radices", [[1, 3], [2, 2], [2, 4], [3, 3, 3], [4, 6, 2], [2, 2, 2, 2], [6, 4, 10]])
def test_each_digit_is_balanced_at_every_prefix_and_every_combination_comes_once_per_period(radices):
    period = math.prod(radices)
    counts = [Counter() for _ in radices]
    combos = set()
    for i in range(2 * period + 5):
        digits = balanced_digits(i, radices)
        combos.add((i // period, tuple(digits)))
        for c, d in zip(counts, digits):
            c[d] += 1
        for c, n in zip(counts, radices):
            assert max(c[v] for v in range(n)) - min(c[v] for v in range(n)) <= 1, (i, radices)
    assert all(sum(1 for p, _ in combos if p == k) == period for k in (0, 1))  # no repeats within a period


def test_plan_balances_attributes_per_class_in_a_seeded_order_and_off_keeps_the_digest():
    spec = parse_spec(program_job())
    plan = make_plan(spec)
    for cls in {s.class_name for s in plan}:
        rows = [s for s in plan if s.class_name == cls]
        for name, values in (("lighting", LIGHTING), ("view", VIEW)):
            counts = Counter(s.prompt_attributes[name] for s in rows)
            assert set(counts) <= set(values) and max(counts.values()) - min(counts[v] for v in values) <= 1
        for s in rows:
            assert s.prompt == s.prompt_template.format(name=cls, **s.prompt_attributes)
            assert s.class_id is not None and s.prompt_template == "a photo of a {name}, {lighting}, {view}"
    assert spec.conditioning.kind == "text"  # a class job with a program needs a text-to-image model
    order = lambda p, cls: [s.prompt_attributes["lighting"] for s in p if s.class_name == cls]  # noqa: E731
    assert len({tuple(order(plan, c)) for c in ("zero", "one", "seven")}) > 1  # not one order for every class
    other_seed = make_plan(parse_spec({**program_job(), "seed": 5}))
    assert any(order(plan, c) != order(other_seed, c) for c in ("zero", "one", "seven"))
    assert [s.prompt for s in make_plan(spec)] == [s.prompt for s in plan]  # deterministic
    # Attribute order in the YAML is not part of the digest, so it must not change the plan either.
    swapped = program_job()
    swapped["conditioning"]["attributes"] = {"view": VIEW, "lighting": LIGHTING}
    assert parse_spec(swapped).digest() == spec.digest()
    assert [s.prompt for s in make_plan(parse_spec(swapped))] == [s.prompt for s in plan]
    # Off (absent or null) leaves the job's identity, and so its plan, as it was.
    plain = small_job()
    nulls = small_job()
    nulls["conditioning"].update(prompt_template=None, attributes=None)
    nulls["conditioning"]["classes"] = [{**c, "prompts": None} for c in nulls["conditioning"]["classes"]]
    assert parse_spec(nulls).digest() == parse_spec(plain).digest()
    assert all(s.prompt is None and s.prompt_attributes is None for s in make_plan(parse_spec(plain)))


def test_per_class_prompt_lists_and_prompt_jobs_are_balanced_too():
    spec = program_job(per_class=9)
    spec["conditioning"]["classes"][0]["prompts"] = ["a {name} at {lighting}, {view}", "{view} view of {name}, {lighting}"]
    plan = make_plan(parse_spec(spec))
    first = [s for s in plan if s.class_id == spec["conditioning"]["classes"][0]["id"]]
    assert sorted(Counter(s.prompt_template for s in first).values()) == [4, 5]
    assert all(s.prompt_template == "a photo of a {name}, {lighting}, {view}" for s in plan if s not in first)
    text = program_job(per_class=5)
    text["conditioning"].pop("classes")
    text["conditioning"].update(prompts=["tabby cat", "golden retriever"], negative_prompt="blurry")
    rows = make_plan(parse_spec(text))
    assert {s.prompt.split(",")[0] for s in rows} == {"a photo of a tabby cat", "a photo of a golden retriever"}
    assert all(s.negative_prompt == "blurry" and s.class_id is None for s in rows)


@pytest.mark.parametrize("change, message", [
    ({"prompt_template": "a photo of a {name}, {lighting}"}, "does not use attributes ['view']"),
    ({"prompt_template": "a photo of a {name}, {lighting}, {view}, {colour}"}, "not attributes"),
    ({"prompt_template": "a photo, {lighting}, {view}"}, "must contain '{name}'"),
    ({"prompt_template": "a {name} {lighting:>5} {view}"}, "not a plain"),
    ({"prompt_template": None}, "no prompts and there is no prompt_template"),
    ({"attributes": {"lighting": ["a", "a"], "view": ["x"]}}, "unique"),
    ({"attributes": {"lighting": [], "view": ["x"]}}, "non-empty"),
    ({"attributes": {"Bad-Name": ["a"]}}, "attributes"),
])
def test_bad_prompt_programs_are_named(change, message):
    with pytest.raises(SpecError) as err:
        parse_spec(program_job(**change))
    assert message in str(err.value) and "conditioning" in str(err.value)


def test_a_program_on_a_class_conditional_model_is_a_clear_error_before_anything_loads():
    spec = program_job()
    spec["generator"]["model"] = "embedded:digits"
    with pytest.raises(ModelCheckError, match="prompt_template: embedded:digits is a class-conditional .* "
                                              "need a text-to-image model"):
        check_job_models(parse_spec(spec))


@pytest.mark.parametrize("conditioning, message", [
    ({"attributes": {}}, "attributes is empty"),
    ({"classes": [{"id": 0, "name": "cat", "prompts": []}]}, "non-empty list"),
    ({"classes": [{"id": 0, "name": "cat", "prompts": ["a {name}, {lighting}, {view}", " "]}]}, "non-empty list"),
])
def test_empty_program_parts_are_named(conditioning, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(program_job(**conditioning))
    plain = small_job()  # an empty list of a class's prompts is an error without a template too
    plain["conditioning"]["classes"][0]["prompts"] = []
    with pytest.raises(SpecError, match="non-empty list"):
        parse_spec(plain)


def test_the_shipped_prompt_program_example_is_valid():
    spec = load_spec(REPO / "jobs" / "pets-prompt-program.yaml")
    assert spec.conditioning.kind == "text" and spec.conditioning.programmed
    assert all(s.prompt_attributes and s.class_id is not None for s in make_plan(spec, 0, 30))
