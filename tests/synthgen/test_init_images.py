"""Which real image a sample starts from: by class name, by a prompt's mapped class, or from the whole set."""

import pytest

from synthgen.init_images import WHOLE_SET, InitImages, pick
from synthgen.plan import make_plan
from synthgen.spec import parse_spec
from tests.conftest import small_job


def test_prompts_draw_from_their_mapped_class_or_the_whole_set_by_seed():
    pools = {"cat": ["c1", "c2", "c3"], "dog": ["d1", "d2"], WHOLE_SET: ["c1", "c2", "c3", "d1", "d2", "x"]}
    init = InitImages("pets-real", 2, 0.5, pools, {}, {"a photo of a tabby": "cat"})
    spec = small_job(conditioning={"classes": None, "prompts": ["a photo of a tabby", "a photo of anything"],
                                   "init_images": {"dataset": "pets-real@2", "strength": 0.5,
                                                   "classes": {"a photo of a tabby": "cat"}}})
    plan = make_plan(parse_spec(spec))
    tabby = [s for s in plan if s.prompt == "a photo of a tabby"]
    other = [s for s in plan if s.prompt != "a photo of a tabby"]
    assert {init.choose(s) for s in tabby} <= set(pools["cat"])
    assert all(init.choose(s) == pools[WHOLE_SET][pick(s.seed, 6)] for s in other)
    assert len({init.choose(s) for s in plan}) > 3  # seeds spread over the pool
    assert [init.choose(s) for s in plan] == [init.choose(s) for s in make_plan(parse_spec(spec))]


def test_a_prompt_mapping_with_a_prompt_program_is_refused_and_a_class_program_draws_by_class():
    mapped = {"dataset": "pets-real@2", "strength": 0.5, "classes": {"tabby": "cat"}}
    with pytest.raises(ValueError, match="prompt program rewrites every prompt"):
        parse_spec(small_job(conditioning={"classes": None, "prompts": ["tabby"], "prompt_template": "a {name}, {x}",
                                           "attributes": {"x": ["a", "b"]}, "init_images": mapped}))
    spec = parse_spec(small_job(conditioning={"classes": [{"id": 0, "name": "cat"}], "prompt_template": "a {name}, {x}",
                                              "attributes": {"x": ["a", "b"]},
                                              "init_images": {"dataset": "pets-real@2", "strength": 0.5}}))
    init = InitImages("pets-real", 2, 0.5, {"cat": ["c1", "c2"]}, {})
    plan = make_plan(spec)
    assert all(s.prompt != "cat" and init.choose(s) in {"c1", "c2"} for s in plan)  # drawn text, class pool
