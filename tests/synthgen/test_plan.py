from synthgen.plan import (Round, Shard, derive_seed, first_round, make_plan, make_shards, next_round, round_samples,
                           round_shards, shard_from_record, shard_plan, shard_record)
from synthgen.spec import parse_spec
from tests.conftest import small_job


def test_plan_is_deterministic_and_index_major():
    spec = parse_spec(small_job(per_class=4, classes=(0, 1, 7)))
    plan = make_plan(spec)
    assert len(plan) == 12
    assert [s.class_id for s in plan[:6]] == [0, 1, 7, 0, 1, 7]
    again = make_plan(spec)
    assert [(s.sample_id, s.seed) for s in plan] == [(s.sample_id, s.seed) for s in again]
    assert len({s.sample_id for s in plan}) == 12
    assert len({s.seed for s in plan}) == 12
    assert [s.plan_index for s in plan] == list(range(12))


def test_slices_equal_the_full_plan():
    spec = parse_spec(small_job(per_class=5))
    full = make_plan(spec)
    pieces = [s for sh in make_shards(len(full), 4) for s in make_plan(spec, sh.start, sh.stop)]
    assert [s.sample_id for s in pieces] == [s.sample_id for s in full]


def test_seed_depends_on_job_seed_condition_and_index_only():
    a = parse_spec(small_job(seed=3))
    b = parse_spec(small_job(seed=3, generator={"steps": 7}))  # other settings: same seeds
    assert [s.seed for s in make_plan(a)] == [s.seed for s in make_plan(b)]
    assert derive_seed(3, "class:7", 0) != derive_seed(4, "class:7", 0)
    assert derive_seed(3, "class:7", 0) != derive_seed(3, "class:7", 1)


def test_shards_cover_plan():
    shards = make_shards(10, 4)
    assert [(s.start, s.stop) for s in shards] == [(0, 4), (4, 8), (8, 10)]
    assert shards[2].name == "shard-00002" and len(shards[2]) == 2


def _kept_job(**over):
    spec = small_job(per_class=4, classes=(0, 1, 7), **over)
    del spec["images_per_condition"]
    spec["kept_per_condition"] = 4
    return parse_spec(spec)


def test_a_round_slices_in_index_major_order_whatever_each_condition_asks():
    rnd = Round(1, 12, ((0, 4, 3), (2, 4, 1), (1, 4, 2)))
    full = rnd.entries(0, len(rnd))
    assert full == [(0, 4), (2, 4), (1, 4), (0, 5), (1, 5), (0, 6)]
    assert [e for k in range(len(rnd)) for e in rnd.entries(k, k + 1)] == full  # any slice agrees
    assert rnd.stop == 18


def test_the_next_round_asks_each_short_condition_for_its_shortfall_within_its_cap():
    spec = _kept_job(max_per_condition=6)
    first = first_round(spec)
    assert first.asks == ((0, 0, 4), (1, 0, 4), (2, 0, 4)) and len(first) == 12
    nxt = next_round(spec, first, generated=[4, 4, 4], kept=[4, 1, 3])
    # class 0 is done; class 1 is 3 short but may make only 2 more; class 7 is 1 short
    assert nxt == Round(1, 12, ((1, 4, 2), (2, 4, 1)))
    samples = round_samples(spec, nxt, nxt.start, nxt.stop)
    planned = {(s.class_id, s.sample_id, s.seed) for s in make_plan(parse_spec(small_job(per_class=6, classes=(0, 1, 7))))}
    assert [s.plan_index for s in samples] == [12, 13, 14]
    assert [s.class_id for s in samples] == [1, 7, 1]
    assert next_round(spec, nxt, generated=[4, 6, 5], kept=[4, 2, 4]) is None  # done, or at the cap
    # seeds continue each condition's index sequence (sample ids also name the spec, so they differ)
    assert {s.seed for s in samples} <= {seed for _, _, seed in planned}


def test_a_fixed_count_job_has_one_round():
    spec = parse_spec(small_job(per_class=4))
    assert next_round(spec, first_round(spec), [4] * 3, [0] * 3) is None
    assert shard_plan(spec, make_shards(12, 5)[1]) == make_plan(spec, 5, 10)


def test_a_shard_round_trips_through_its_record():
    shard = round_shards(Round(2, 30, ((0, 9, 3), (4, 7, 5))), 4, 11)[1]
    assert shard == Shard(12, 34, 38, shard.round) and shard_from_record(shard_record(shard)) == shard
