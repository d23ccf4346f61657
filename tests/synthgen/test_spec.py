import re

import pytest
import yaml

from synthgen.spec import JobSpec, SpecError, load_params, load_spec, parse_assignments, parse_spec
from tests.conftest import DEMO_SPEC, REPO, small_job


def test_shipped_specs_are_valid():
    demo = load_spec(DEMO_SPEC)
    assert demo.total_images == 1000
    assert demo.conditioning.kind == "class"
    text = load_spec(REPO / "jobs" / "sd-text2img.yaml")
    assert text.conditioning.kind == "text"
    assert text.generator.scheduler == "DPMSolverMultistepScheduler"  # alias resolved


@pytest.mark.parametrize(
    "change, field",
    [
        ({"generator": {"steps": 0}}, "generator.steps"),
        ({"generator": {"device": "tpu"}}, "generator.device"),
        ({"generator": {"scheduler": "fastest"}}, "generator.scheduler"),
        ({"images_per_condition": -1}, "images_per_condition"),
        ({"dedup": {"threshold": 1.5}}, "dedup.threshold"),
        ({"output": {"dataset": "Bad Name!"}}, "output.dataset"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_field_is_named(change, field):
    with pytest.raises(SpecError) as err:
        parse_spec(small_job(**change))
    assert field in str(err.value)


def test_shard_must_hold_whole_batches():
    with pytest.raises(SpecError, match="multiple of generator.batch_size"):
        parse_spec(small_job(output={"dataset": "x", "shard_size": 12}))


def test_conditioning_needs_exactly_one_kind():
    spec = small_job()
    spec["conditioning"]["prompts"] = ["a cat"]
    with pytest.raises(SpecError, match="exactly one"):
        parse_spec(spec)


def test_duplicate_class_ids_rejected():
    spec = small_job()
    spec["conditioning"]["classes"].append({"id": 0, "name": "again"})
    with pytest.raises(SpecError, match="unique"):
        parse_spec(spec)


def test_load_spec_errors_are_clear(tmp_path):
    with pytest.raises(SpecError, match="no such job spec"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(broken)


def test_digest_is_canonical(tmp_path):
    a = parse_spec(small_job())
    reordered = dict(reversed(list(small_job().items())))
    b = parse_spec(reordered)
    assert a.digest() == b.digest()
    c = parse_spec(small_job(seed=1))
    assert c.digest() != a.digest()
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job()))
    assert load_spec(path).digest() == a.digest()
    assert isinstance(a, JobSpec)


def test_overrides_merge_and_validate(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job()))
    spec = load_spec(path, parse_assignments(["generator.steps=7", "generator.guidance_scale=3.5", "seed=9"]))
    assert (spec.generator.steps, spec.generator.guidance_scale, spec.seed) == (7, 3.5, 9)
    assert spec.generator.scheduler == parse_spec(small_job()).generator.scheduler  # siblings kept
    with pytest.raises(SpecError, match="generator.steps"):
        load_spec(path, parse_assignments(["generator.steps=-1"]))
    with pytest.raises(SpecError, match="FIELD.PATH=VALUE"):
        parse_assignments(["generator.steps"])


def test_params_section_is_the_demo_job(tmp_path):
    """params.yaml's `demo` knobs (what DVC tracks) equal jobs/digits-demo.yaml's, so both make one digest."""
    merged = load_spec(DEMO_SPEC, load_params(f"{REPO / 'params.yaml'}:demo"))
    assert merged.digest() == load_spec(DEMO_SPEC).digest()
    with pytest.raises(SpecError, match="no mapping 'nope'"):
        load_params(f"{REPO / 'params.yaml'}:nope")


@pytest.mark.parametrize("template", ["{name} {nope}", "{name} {0}", "{name} }", "{name} {", "{name} {name.nope}"])
def test_caption_template_must_format_with_just_a_name(template):
    spec = small_job()
    spec["conditioning"]["caption_template"] = template
    with pytest.raises(SpecError, match="does not format with just"):
        parse_spec(spec)


def test_literal_braces_in_a_caption_template_are_fine():
    spec = small_job()
    spec["conditioning"]["caption_template"] = "{{digit}} {name}"
    assert parse_spec(spec).conditioning.caption("7") == "{digit} 7"


def test_duplicate_class_names_rejected():
    spec = small_job()
    spec["conditioning"]["classes"] = [{"id": 0, "name": "a"}, {"id": 1, "name": "a"}]
    with pytest.raises(SpecError, match="class names must be unique; given more than once: 'a'"):
        parse_spec(spec)


@pytest.mark.parametrize("field, value", [("steps", True), ("batch_size", True), ("guidance_scale", False),
                                          ("height", True), ("threads", True)])
def test_booleans_are_not_numbers(field, value):
    with pytest.raises(SpecError, match=rf"generator.{field}: .*not a boolean"):
        parse_spec(small_job(generator={field: value}))
    spec = small_job()
    spec["conditioning"]["classes"][0]["id"] = True
    with pytest.raises(SpecError, match="not a boolean"):
        parse_spec(spec)


def test_yaml_and_set_numbers_still_parse(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job()))
    spec = load_spec(path, parse_assignments(["generator.steps=10", "generator.guidance_scale=3", "seed=0"]))
    assert (spec.generator.steps, spec.generator.guidance_scale, spec.seed) == (10, 3.0, 0)
    assert spec.generator.compile is False  # real booleans still go to bool fields


def test_duplicate_yaml_keys_are_named_with_their_lines(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_job()) + "seed: 5\n")
    first = 1 + path.read_text().splitlines().index("seed: 0")
    with pytest.raises(SpecError, match=rf"key 'seed' is given twice \(first on line {first}\)"):
        load_spec(path)
    nested = tmp_path / "params.yaml"
    nested.write_text("demo:\n  generator: {steps: 2, steps: 3}\n")
    with pytest.raises(SpecError, match="key 'steps' is given twice"):
        load_params(f"{nested}:demo")
    with pytest.raises(SpecError, match="key 'a' is given twice"):
        parse_assignments(["generator={a: 1, a: 2}"])
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("base: &b {steps: 2}\ndemo:\n  <<: *b\n  steps: 3\n")  # a merge key may be overridden
    assert load_params(f"{anchors}:demo") == {"steps": 3}


def test_empty_params_section_is_named(tmp_path):
    with pytest.raises(SpecError, match="section name after ':' is empty"):
        load_params(f"{REPO / 'params.yaml'}:")


def test_a_spec_that_leaves_every_default_alone_is_valid():
    """Only the required fields: the defaults (shard_size, batch_size, ...) must agree with each other."""
    spec = parse_spec({"name": "minimal", "conditioning": {"classes": [{"id": 0, "name": "zero"}]},
                       "images_per_condition": 1, "output": {"dataset": "minimal"}})
    assert spec.output.shard_size % spec.generator.batch_size == 0


# Fields whose bound depends on another field: set the other so that only the bound under test decides.
_COMPANIONS = {
    "generator.batch_size": lambda v: {"output": {"shard_size": v}},
    "output.shard_size": lambda v: {"generator": {"batch_size": 1}},
    **{f"conditioning.prompt_expansion.{name}": lambda v: {"conditioning": {  # a whole record around the field
        "classes": [{"id": 0, "name": "zero", "prompts": ["a {name}"]}],
        "prompt_expansion": {"model": "lm", "weights_sha256": "0" * 64, "per_template": 1, "max_new_tokens": 1,
                             "added": 0}}}
       for name in ("model", "per_template", "max_new_tokens", "added")},
    "kept_per_condition": lambda v: {"images_per_condition": None},  # None: the field is left out
    "max_per_condition": lambda v: {"images_per_condition": None, "kept_per_condition": 1},
    "conditioning.init_images.strength": lambda v: {"conditioning": {"init_images": {"dataset": "digits-real"}}},
}
# A valid element for each constrained list field (a new one fails the collection below until added here).
_LIST_ELEMENTS = {"generator.devices": "cpu"}


def _model_of(annotation):
    """The pydantic model inside ``annotation`` (``M``, ``M | None``, ``list[M]``), and whether it is a list."""
    import typing

    from pydantic import BaseModel

    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg, False
        if typing.get_origin(arg) is list:
            inner = typing.get_args(arg)[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    return None, False


def _edge_cases(model=JobSpec, prefix=""):
    """(field path, value, valid?) at and just past every bound declared on ``model`` and its sub-models."""
    import math
    import typing

    import annotated_types as at

    cases = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub, is_list = _model_of(info.annotation)
        if sub is not None:
            cases += _edge_cases(sub, f"{path}.0." if is_list else f"{path}.")
            continue
        args = typing.get_args(info.annotation) or (info.annotation,)
        is_float = float in args
        step_up = (lambda x: math.nextafter(x, math.inf)) if is_float else (lambda x: x + 1)
        step_down = (lambda x: math.nextafter(x, -math.inf)) if is_float else (lambda x: x - 1)
        for c in info.metadata:
            if isinstance(c, at.Ge):
                cases += [(path, c.ge, True), (path, step_down(c.ge), False)]
            elif isinstance(c, at.Gt):
                cases += [(path, step_up(c.gt), True), (path, c.gt, False)]
            elif isinstance(c, at.Le):
                cases += [(path, c.le, True), (path, step_up(c.le), False)]
            elif isinstance(c, at.Lt):
                cases += [(path, step_down(c.lt), True), (path, c.lt, False)]
            elif isinstance(c, (at.MinLen, at.MaxLen)):
                if str in args:
                    make = lambda n: "a" * n  # noqa: E731
                else:
                    assert path in _LIST_ELEMENTS, f"{path}: add a valid element to _LIST_ELEMENTS"
                    make = lambda n, e=_LIST_ELEMENTS[path]: [e] * n  # noqa: E731
                if isinstance(c, at.MinLen):
                    cases += [(path, make(c.min_length), True)] + (
                        [(path, make(c.min_length - 1), False)] if c.min_length else [])
                else:
                    cases += [(path, make(c.max_length), True), (path, make(c.max_length + 1), False)]
            elif type(c).__name__ not in ("_PydanticGeneralMetadata",):  # patterns are tested by name
                raise AssertionError(f"{path}: constraint {c!r} has no edge case here; add one")
    return cases


def _set(spec: dict, path: str, value) -> dict:
    node = spec
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[leaf if not leaf.isdigit() else int(leaf)] = value
    return spec


_EDGES = _edge_cases()


def test_every_bound_of_the_spec_is_covered():
    fields = {path for path, _, _ in _EDGES}
    assert {"generator.guidance_scale", "generator.steps", "dedup.threshold", "output.shard_size",
            "seed", "conditioning.classes.0.name"} <= fields


@pytest.mark.parametrize("path, value, valid", _EDGES, ids=[f"{p}={v!r}" for p, v, _ in _EDGES])
def test_each_bound_holds_at_its_edge_and_not_past_it(path, value, valid):
    spec = small_job()
    for key, over in _COMPANIONS.get(path, lambda v: {})(value).items():
        if over is None:
            del spec[key]
        else:
            spec[key] = {**spec.get(key, {}), **over} if isinstance(over, dict) else over
    _set(spec, path, value)
    if valid:
        parse_spec(spec)
    else:
        with pytest.raises(SpecError) as err:
            parse_spec(spec)
        assert path in str(err.value), str(err.value)


@pytest.mark.parametrize("name", ["../../../../outside", "/an/absolute/path", "..", ".", "a/b", "a\\b", "nul\x00",
                                  "esc\x1b[31m", "line\nbreak", "x" * 256])
def test_a_class_name_must_be_one_path_component(name):
    spec = small_job()
    spec["conditioning"]["classes"][0]["name"] = name
    with pytest.raises(SpecError, match="conditioning.classes.0.name") as err:
        parse_spec(spec)
    assert "class name" in str(err.value)


def test_deeply_nested_yaml_is_a_clear_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(SpecError, match="nested deeper than"):
        load_spec(deep)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{x}: &{x} [{', '.join([f'*{p}'] * 10)}]\n" for p, x in zip("abcdefgh", "bcdefghi")))
    with pytest.raises(SpecError, match="expands to more than"):
        load_spec(bomb)


def _kept(n=30, **over):
    spec = small_job(**over)
    del spec["images_per_condition"]
    spec["kept_per_condition"] = n
    return spec


def test_a_spec_without_the_kept_count_keeps_its_digest():
    # the demo's digest before kept_per_condition existed (main fb98f54): its committed versions stay its own
    assert load_spec(DEMO_SPEC).digest() == "1cccb0a1bc7bf0758cd68323533b2d930733bb863c88697159ae2628cd8ee2a5"


def test_kept_per_condition_states_its_cap_and_is_its_own_job():
    spec = parse_spec(_kept(30))
    assert spec.max_per_condition == 60 and spec.total_images == 90 and spec.images_per_condition is None
    assert parse_spec({**_kept(30), "max_per_condition": 60}).digest() == spec.digest()  # the default, written out
    assert parse_spec({**_kept(30), "max_per_condition": 61}).digest() != spec.digest()
    assert parse_spec(small_job(per_class=30)).digest() != spec.digest()
    assert "30 kept per condition (at most 60 generated)" == spec.size_text


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(images_per_condition=5), "exactly one of images_per_condition"),
    (lambda s: s.pop("kept_per_condition"), "exactly one of images_per_condition"),
    (lambda s: s.update(max_per_condition=29), "max_per_condition (29) must be at least kept_per_condition (30)"),
    (lambda s: s["dedup"].update(keep="quality"), "kept_per_condition needs dedup.keep: first"),
])
def test_kept_per_condition_is_checked_against_the_other_count_fields(change, words):
    spec = _kept(30)
    change(spec)
    with pytest.raises(SpecError, match=re.escape(words)):
        parse_spec(spec)


def test_max_per_condition_needs_kept_per_condition():
    with pytest.raises(SpecError, match="max_per_condition caps kept_per_condition"):
        parse_spec({**small_job(), "max_per_condition": 10})
