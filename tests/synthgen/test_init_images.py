"""Which real image a sample starts from: by class name, by a prompt's mapped class, or from the whole set."""

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
