"""Planning a sweep: one fixed-size probe per setting, in a scratch dataset, whatever the job's count field."""

import pytest

from flows.job.sweep import SweepError, plan_sweep
from synthgen.spec import parse_spec
from synthgen.sweep import parse_grid
from tests.conftest import small_job


def test_a_kept_count_job_is_probed_at_a_fixed_size_in_a_scratch_dataset():
    spec = parse_spec(small_job(images_per_condition=None, kept_per_condition=30))
    probes = plan_sweep(spec, parse_grid(["generator.guidance_scale=1,2"]), per_setting=7)
    assert [p.spec.generator.guidance_scale for p in probes] == [1, 2]
    for p in probes:
        assert p.spec.images_per_condition == 3 and p.spec.kept_per_condition is None  # ceil(7 / 3 classes)
        assert p.spec.output.dataset.startswith(spec.output.dataset + "-sweep-")
        assert p.full.kept_per_condition == 30  # the chosen spec keeps what the user asked for


@pytest.mark.parametrize("key", ["kept_per_condition", "max_per_condition", "images_per_condition"])
def test_the_count_fields_cannot_be_swept(key):
    with pytest.raises(SweepError, match=key):
        plan_sweep(parse_spec(small_job()), parse_grid([f"{key}=5,6"]), per_setting=7)
