"""A watermarked job end to end: rows record the payload, regeneration reproduces it, audit traces a stripped copy."""

from __future__ import annotations


import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version
from flows.cli.app import app
from flows.job.regenerate import regenerate_sample_check
from flows.settings import Paths
from synthgen.imaging import decode
from synthgen.watermark import payload, read

MARKED = {"generator": {"height": 256, "width": 256, "batch_size": 4, "steps": 2},  # the digits UNet at 256 px
          "output": {"dataset": "digits-wm", "shard_size": 4, "watermark": {"enabled": True}}}


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("wm"))
    from synthgen.spec import parse_spec
    from tests.conftest import small_job

    from flows.job.run import run_job

    run_job(parse_spec(small_job(per_class=2, classes=(0, 7), dedup={"real_dataset": None}, **MARKED)), paths=paths)
    return paths


def test_rows_record_the_payload_their_pixels_carry(marked):
    rows = open_version(Catalog(marked.catalog), "digits-wm@1").table(
        ["sample_id", "image", "watermark", "watermark_method", "width"], status="all").to_pylist()
    assert len(rows) == 4 and {r["watermark_method"] for r in rows} == {"dwtDctSvd:72"}
    for r in rows:
        assert r["width"] == 256 and r["watermark"] == payload(r["sample_id"])
        assert read(__import__("numpy").asarray(decode(r["image"]["bytes"]).convert("RGB"))) == r["watermark"]


def test_regeneration_reproduces_the_marked_pixels(marked):
    result = regenerate_sample_check(Catalog(marked.catalog), "digits-wm@1", 100)
    assert (result.checked, result.matched, result.mismatches) == (4, 4, [])


def test_audit_traces_a_stripped_jpeg_copy_by_its_payload(marked, tmp_path):
    row = open_version(Catalog(marked.catalog), "digits-wm@1").table(["sample_id", "image"], status="all").to_pylist()[3]
    img = decode(row["image"]["bytes"]).convert("RGB")
    copy = tmp_path / "copy.jpg"
    # JPEG q75, no metadata. Not resized: on these flat grey digits a 75% resize costs 7-12 of 48 bits
    # (beyond MAX_DISTANCE); on photos it costs <= 6 at 256 px, <= 4 at 512 (tests/synthgen/test_watermark.py).
    img.save(copy, quality=75)
    res = CliRunner().invoke(app, ["--data-dir", str(marked.root), "audit", str(copy)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert f"watermark payload -> {row['sample_id']} in digits-wm" in text and "closest by CLIP" not in text


def test_card_says_which_rows_are_marked_and_how(marked):
    from catalog.card import render_card

    text = render_card(Catalog(marked.catalog), "digits-wm@1")
    assert "## Marking" in text and "| dwtDctSvd:72 | 4 |" in text and "export --credentials" in text
