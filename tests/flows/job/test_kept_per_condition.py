"""``kept_per_condition``: the plan extends in rounds until each class has N kept rows or hit its cap,
and two device workers, a killed-and-resumed run and a rerun commit the same version.

One job (3 digit classes, 30 kept each, cap 35, a dedup threshold that drops rows) run from nothing
twice (two device workers; this process, killed in its second round and resumed), then once more.
"""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest

from catalog import Catalog
from catalog.card import render_card
from catalog.per_condition import condition_counts
from catalog.version import open_version, read_rows
from flows.cli.app import per_condition_fields
from flows.executors.devices import DevicesExecutor
from flows.generate import per_condition_summary
from flows.job.components import ComponentLoader, Given
from flows.job.run import data_paths, run_job
from flows.job.staging import Staging
from flows.outputs.reports import Finished, PerCondition
from synthgen import failpoints
from synthgen.failpoints import InjectedFailure
from synthgen.spec import parse_spec
from tests.conftest import small_job

N, CAP = 30, 35
COLUMNS = ["plan_index", "sample_id", "seed", "label", "image_sha256", "status"]


def kept_job() -> dict:
    spec = small_job("kept-digits", classes=(0, 1, 7), dedup={"real_dataset": None, "threshold": 0.9})
    del spec["images_per_condition"]
    spec.update(kept_per_condition=N, max_per_condition=CAP)
    spec["generator"]["batch_size"] = 16
    spec["output"]["shard_size"] = 32  # the first round (90) is shards 0-2; extension rounds follow
    return spec


def version_rows(data, result) -> list[tuple]:
    v = open_version(Catalog(data_paths(data).catalog), f"{result.dataset}@{result.version}")
    t = read_rows(v, COLUMNS, "all", None)
    t = t.take(pc.sort_indices(t["plan_index"]))
    return list(zip(*(t[c].to_pylist() for c in COLUMNS)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, monkeypatch_module):
    """The job from nothing on two device workers, then in this process killed in its second round and
    resumed (each in its own data folder), then run again where it was committed."""
    job = parse_spec(kept_job())
    root = tmp_path_factory.mktemp("kept")
    devices = root / "devices"
    two = DevicesExecutor(["cpu", "cpu"], keep_workers=True)  # as `synthgen run` makes it: kept across rounds
    out = {"job": job, "devices": (devices, run_job(job, devices, executor=two,
                                                    setup=ComponentLoader(job, str(data_paths(devices).catalog))))}
    out["closed"] = two.kept is None
    parts = ComponentLoader(job, str(root / "unused"))()  # no real set: the components need no catalog
    # killed at the last shard of the last round: its final files are written, its decision record is not;
    # the resumed run must rebuild every round from the decided shards and reuse them all
    failpoints._hits.clear()
    monkeypatch_module.setenv(failpoints.ENV, f"shard-files@{len(out['devices'][1].shards)}:raise")
    with pytest.raises(InjectedFailure):
        run_job(job, root / "resumed", setup=Given(parts))
    monkeypatch_module.delenv(failpoints.ENV)
    out["left"] = sorted(p.name for p in Staging.of(data_paths(root / "resumed"), job).root.glob("*.decided.json"))
    out["resumed"] = (root / "resumed", run_job(job, root / "resumed", setup=Given(parts)))
    out["rerun"] = (root / "resumed", run_job(job, root / "resumed", setup=Given(parts)))
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_class_has_exactly_n_kept_rows_or_hit_its_cap_and_says_so(runs):
    data, result = runs["devices"]
    rows = version_rows(data, result)
    assert any(r[5] != "kept" for r in rows), "the threshold must drop rows, or nothing is extended"
    assert len(rows) > 3 * N and len(result.shards) > 3  # the plan went past its first round
    assert [r[0] for r in rows] == list(range(len(rows)))  # plan indexes continue the sequence
    counts = condition_counts(open_version(Catalog(data_paths(data).catalog), f"{result.dataset}@{result.version}"))
    for c in counts.rows:
        label = {"zero": 0, "one": 1, "seven": 7}[c.condition]
        assert c.generated == sum(1 for r in rows if r[3] == label) <= CAP
        assert c.kept == sum(1 for r in rows if r[3] == label and r[5] == "kept")
        assert c.kept == N or (c.capped and c.generated == CAP and c.kept < N), c
        assert c.capped == (c.kept < N)
    assert counts.missed == [] and counts.target == N and counts.cap == CAP
    card = render_card(Catalog(data_paths(data).catalog), f"{result.dataset}@{result.version}")
    assert "## Generated and kept per condition" in card
    assert f"hit the cap: {', '.join(counts.capped) or 'none'}" in card
    assert counts.metrics()["kept_per_condition_max"] == N


def test_a_run_killed_in_an_extension_round_resumes_to_the_version_two_device_workers_made(runs):
    last = len(runs["devices"][1].shards) - 1
    assert last > 3  # shards 0-2 are the first round: the kill is in a later one, and extension shards are reused
    assert runs["left"] == [f"shard-{k:05d}.decided.json" for k in range(last)]
    data, result = runs["resumed"]
    assert [r.shard for r in result.shards if r.reused] == list(range(last))  # generated again: the last only
    assert version_rows(data, result) == version_rows(*runs["devices"])


def test_device_workers_are_kept_across_rounds(runs):
    _, result = runs["devices"]
    assert len(result.shards) > 3 and len({r.pid for r in result.shards}) <= 2  # not two new workers per round
    assert runs["closed"]  # and ended with the job


def test_a_rerun_is_answered_with_the_same_version(runs):
    (_, first), (_, again) = runs["resumed"], runs["rerun"]
    assert again.reused and again.version == first.version


def test_the_summary_and_mlflow_report_each_condition_and_the_capped_ones(runs):
    data, result = runs["devices"]
    cat = Catalog(data_paths(data).catalog)
    counts = condition_counts(open_version(cat, f"{result.dataset}@{result.version}"))
    logged = PerCondition().write(Finished(cat, runs["job"], result.commit, {}, per_condition=counts))
    written = json.loads(logged.artifacts[0].read_text())
    assert written["capped"] == counts.capped and len(written["conditions"]) == 3
    assert logged.metrics["conditions_capped"] == len(counts.capped)
    assert logged.tags["synthgen.capped_conditions"] == (", ".join(counts.capped) or "none")
    lines = dict(per_condition_fields(per_condition_summary(counts)))
    reached = sum(1 for r in counts.rows if r.kept == N)
    assert lines["kept per condition"].startswith(f"{N} in {reached} of 3 conditions")
    assert ("hit the cap" in lines) == bool(counts.capped)
