"""The sweep's grid and the rule that picks a setting."""

import pytest
from pydantic import ValidationError

from synthgen.sweep import GridError, Measures, Rule, choose, denoiser_passes, parse_grid


def test_every_combination_first_item_slowest_values_as_yaml():
    s = parse_grid(["generator.guidance_scale=1,1.5", "generator.steps=5,10", "generator.scheduler=dpm++2m"])
    assert [x.assignments for x in s] == [
        {"generator.guidance_scale": g, "generator.steps": n, "generator.scheduler": "dpm++2m"}
        for g in (1, 1.5) for n in (5, 10)]
    assert s[1].overrides() == {"generator": {"guidance_scale": 1, "steps": 10, "scheduler": "dpm++2m"}}
    assert s[1].label == "guidance_scale=1, steps=10, scheduler=dpm++2m"


@pytest.mark.parametrize("items, message", [
    ([], "at least one --grid"), (["generator.steps"], "FIELD.PATH=V1"), (["generator.steps="], "FIELD.PATH=V1"),
    (["generator..steps=1"], "dotted"), (["generator.steps=5,,10"], "empty value"),
    (["generator.steps=5,5"], "twice"), (["generator.steps=5", "generator.steps=10"], "already on the grid"),
    (["generator=1", "generator.steps=1"], "already on the grid"), (["seed=[1"], "not valid YAML"),
])
def test_bad_grid_items_are_one_line_errors(items, message):
    with pytest.raises(GridError, match=message.replace(".", r"\.").replace("[", r"\[")) as e:
        parse_grid(items)
    assert "\n" not in str(e.value)


def _m(agreement=0.99, coverage=0.9, diversity=0.9, tstr_ratio=0.95, frechet=0.1, passes=10):
    return Measures(100, agreement, 1.0, 1.0, coverage, frechet, diversity, diversity, tstr_ratio, 0.9, 30.0, passes)


def test_thresholds_first_then_the_best_of_one_measure_ties_to_the_earlier():
    ms = [_m(agreement=0.97, tstr_ratio=1.0), _m(tstr_ratio=0.96), _m(tstr_ratio=0.98), _m(tstr_ratio=0.98)]
    assert choose(ms, Rule()) == 2  # the best ratio (1.0) misses agreement; 2 and 3 tie: the earlier
    assert Rule().misses(ms[0]) == ["agreement < 0.98"]
    assert choose(ms, Rule(minimum={}, best="tstr_ratio")) == 0
    assert choose([_m(frechet=0.2), _m(frechet=0.1)], Rule(minimum={}, best="frechet")) == 1  # lower is better
    assert choose([_m(coverage=None)], Rule()) is None  # a missing value meets no threshold
    assert choose(ms, Rule(maximum={"tstr_ratio": 0.97})) == 1
    assert Rule().describe() == ("agreement >= 0.98, coverage >= 0.8, diversity >= 0.8; then the highest tstr_ratio")


def test_unknown_measures_are_refused():
    with pytest.raises(ValidationError, match="unknown measure 'accuracy'"):
        Rule(best="accuracy")
    with pytest.raises(ValidationError, match="unknown measure 'cov'"):
        Rule(minimum={"cov": 0.8})


def test_a_budget_in_denoiser_passes_does_not_depend_on_the_machine():
    assert [denoiser_passes(5, 1.0), denoiser_passes(5, 1.5), denoiser_passes(10, 2.0)] == [5, 10, 20]
    ms = [_m(tstr_ratio=0.99, passes=20), _m(tstr_ratio=0.97, passes=10)]
    assert choose(ms, Rule()) == 0 and choose(ms, Rule(maximum={"denoiser_passes": 10})) == 1
