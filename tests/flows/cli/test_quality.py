"""`synthgen quality`: one version's report, two side by side, JSON, clear errors."""

import json

import pytest
from typer.testing import CliRunner

from catalog import Catalog, samples_to_table
from catalog.derive import takedown
from catalog.quality import version_quality
from flows.cli.app import app
from flows.settings import configure
from synthgen.quality import QualityConfig
from tests.conftest import make_samples

runner = CliRunner()


@pytest.fixture
def data(tmp_path):
    cat = Catalog(configure(tmp_path).catalog)
    for name, origin, n, seed, job in (("real", "real", 45, 1, None),
                                       ("synth", "synthetic", 30, 2, {"dedup": {"real_dataset": "real"}})):
        cat.create(name, origin)
        with cat.lock(name):
            cat.commit(name, [cat.write_shard(name, samples_to_table(make_samples(n, origin, seed=seed), "clip@1"))],
                       job=job)
    takedown(cat, "synth", "label = 0", "class 0 withdrawn")
    return tmp_path


def cli(data, *args):
    return runner.invoke(app, ["--data-dir", str(data), "quality", *args], catch_exceptions=False)


def test_one_version_as_json_equals_the_report(data):
    r = cli(data, "synth@1", "--json", "--k", "3", "--seed", "4", "--max-per-group", "8")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    expected = version_quality(Catalog(configure(data).catalog), "synth@1",
                               config=QualityConfig(k=3, seed=4, max_per_group=8))
    assert doc == json.loads(expected.dumps())
    assert doc["reference"] == "real@1" and doc["config"]["k"] == 3 and doc["config"]["seed"] == 4
    assert doc["groups"][0]["synthetic_sampled"] == 8  # 10 rows per class, sampled
    assert doc["utility"]["ratio"] is not None and doc["utility"]["train_rows"] == 30


def test_one_version_as_markdown(data):
    r = cli(data, "synth@1")
    assert r.exit_code == 0 and "| **all** | 30 | 45 | 30 |" in r.output and "k = 5" in r.output
    assert "Training utility (linear probe" in r.output and "| TSTR / TRTR | TSTR | TRTR |" in r.output


def test_two_versions_side_by_side_after_a_takedown(data):
    r = cli(data, "synth@1", "synth@2", "--json")
    doc = json.loads(r.output)
    rows = {row["score"]: row for row in doc["side_by_side"]}
    assert rows["all.synthetic_rows"] == {"score": "all.synthetic_rows", "a": 30, "b": 20, "b_minus_a": -10}
    assert rows["c0.synthetic_rows"]["b"] is None  # the class taken down
    table = cli(data, "synth@1", "synth@2").output
    assert "synth@1" in table and "synth@2" in table and "all.coverage" in table and "all.tstr_ratio" in table


@pytest.mark.parametrize("args, message", [
    (("synth@1", "synth@2", "real@1"), "two to compare"),
    (("synth@1", "--k", "0"), "--k"),
    (("nope@1",), "nope"),
    (("synth@1", "--real", "synth@1"), "not real"),
])
def test_bad_input_is_a_clear_error(data, args, message):
    r = cli(data, *args)
    assert r.exit_code == 2 and message in r.output
