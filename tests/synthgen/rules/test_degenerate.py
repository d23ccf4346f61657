"""The degenerate-image rule: measured on every image, stored per row, applied by a job and by rededup."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from catalog import Catalog, RunRef, open_version
from flows.job.components import load_job_generator
from flows.job.rededup import rededup
from flows.settings import configure
from flows.job.run import run_job
from synthgen.digits import load_digits_uint8, upsample
from synthgen.records import LOW_QUALITY, Sample
from synthgen.rules.degenerate import Degenerate, DegenerateLimits
from synthgen.spec import SpecError, parse_spec
from tests.conftest import small_job
from tests.flows.job.partial_runs import injected


def digit() -> Image.Image:
    images, _ = load_digits_uint8()
    return Image.fromarray((upsample(images[:1], 16)[0] * 255).round().astype(np.uint8))


def judged(img: Image.Image, limits=DegenerateLimits()):
    return Degenerate(limits).check(Sample("x", "synthetic", measures=Degenerate.measure(img)))


def test_blank_washed_out_and_blurry_images_fail_a_real_digit_passes():
    d = digit()
    assert judged(d) is None
    blank = judged(Image.new("L", (16, 16), 0))
    assert blank.status == LOW_QUALITY and "pixel spread 0.0" in blank.reason
    assert blank.evidence == {"pixel_spread": 0.0, "laplacian_var": 0.0}
    washed = Image.fromarray((np.asarray(d, np.float32) * 0.08 + 220).astype(np.uint8))
    assert "washed-out" in judged(washed).reason
    blurry = judged(d.filter(ImageFilter.GaussianBlur(2)))
    assert "variance of the Laplacian" in blurry.reason and blurry.evidence["pixel_spread"] >= 32
    assert judged(d.filter(ImageFilter.GaussianBlur(2)), DegenerateLimits(min_laplacian_var=10)) is None
    assert Degenerate(DegenerateLimits()).check(Sample("old", "synthetic")) is None  # no evidence stored


def test_one_spec_field_off_by_default_and_validated():
    spec = parse_spec(small_job())
    assert spec.dedup.degenerate is None
    assert parse_spec(small_job(dedup={"degenerate": {}})).dedup.degenerate == DegenerateLimits()
    # off, the field does not change the job's identity (its committed version stays reusable)
    assert '"degenerate"' not in spec.canonical_json()
    with pytest.raises(SpecError, match="degenerate"):
        parse_spec(small_job(dedup={"degenerate": {"min_pixel_spread": -1}}))
    with pytest.raises(SpecError, match="degenerate.min_pixel_spread"):  # not read as 1.0
        parse_spec(small_job(dedup={"degenerate": {"min_pixel_spread": True}}))
    assert parse_spec(small_job(dedup={"degenerate": {"min_pixel_spread": 20}})).dedup.degenerate.min_pixel_spread == 20.0


class SometimesBlank:
    """The embedded generator, but every fifth sample comes out black (as a safety checker returns it)."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, samples):
        arrays = self.inner.generate(samples)
        for i, s in enumerate(samples):
            if s.plan_index % 5 == 0:
                arrays[i] = 0.0
        return arrays


def test_a_job_marks_blank_rows_low_quality_with_evidence_and_rededup_reapplies_it(tmp_path):
    paths = configure(tmp_path)
    spec = parse_spec(small_job(dataset="digits-blanks", per_class=8, dedup={"real_dataset": None, "degenerate": {}}))
    runs = RunRef(prefect_flow_run_id="degenerate-test", mlflow_run_id=None)
    generator = SometimesBlank(load_job_generator(spec))
    report = run_job(spec, paths=paths, runs=runs, setup=injected(spec, paths, generator)).commit
    cat = Catalog(paths.catalog)
    rows = open_version(cat, f"digits-blanks@{report.version}").table(status="all").to_pylist()
    blank = [r for r in rows if r["plan_index"] % 5 == 0]
    assert len(blank) == 5 and report.counts[LOW_QUALITY] == 5
    for r in blank:
        assert r["status"] == LOW_QUALITY and r["pixel_spread"] == 0 and r["laplacian_var"] == 0
        assert r["drop_reason"].startswith("degenerate image: pixel spread 0.0")
    others = [r for r in rows if r["plan_index"] % 5]
    assert all(r["status"] != LOW_QUALITY and r["pixel_spread"] > 100 and r["laplacian_var"] > 100 for r in others)
    # rededup decides again from the stored evidence alone: off, the blanks are just duplicates of each other
    off = open_version(cat, f"digits-blanks@{rededup(cat, 'digits-blanks', 0.97, degenerate=None).version}")
    assert LOW_QUALITY not in off.manifest.rows_by_status
    on = open_version(cat, f"digits-blanks@{rededup(cat, 'digits-blanks', 0.97, degenerate={}).version}")
    assert on.manifest.rows_by_status[LOW_QUALITY] == 5
