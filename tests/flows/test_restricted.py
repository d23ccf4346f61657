"""A restricted real dataset: the guard and dedup still use it, the CLI's readers need --allow-restricted."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from catalog import Catalog, RunRef, ingest_folder, open_version
from flows.cli.app import app
from flows.settings import Paths
from flows.job.run import run_job
from synthgen.plan import make_shards
from synthgen.spec import parse_spec
from tests.conftest import small_job
from tests.flows.job.test_memorisation_guard import plant_copies


@pytest.fixture(scope="module")
def data(tmp_path_factory, real_digits_dir, embedder):
    """Restricted real digits, and a job whose last shard is planted copies of them."""
    paths = Paths(tmp_path_factory.mktemp("restricted"))
    cat = Catalog(paths.catalog)
    ingest_folder(cat, "digits-real", real_digits_dir, embedder.embed_images, embedder.name, restricted=True)
    spec = parse_spec(small_job(dataset="digits-guarded", per_class=8))  # 24 samples, 3 shards of 8
    shards = make_shards(spec.total_images, spec.output.shard_size)
    runs = RunRef(prefect_flow_run_id="restricted-test", mlflow_run_id=None)
    # The test plays the data owner here: it may read the real images to plant copies of them.
    real = open_version(cat, "digits-real", allow_restricted=True).table(["sample_id", "image"]).to_pylist()
    last = shards[-1]
    picks = plant_copies(spec, last, paths, real, np.random.default_rng(0))  # staged, as a worker would
    report = run_job(spec, paths=paths, runs=runs).commit  # no allow_restricted anywhere in the job
    rows = open_version(cat, f"digits-guarded@{report.version}").table(status="all").to_pylist()
    rows.sort(key=lambda r: r["plan_index"])  # kept and excluded rows live in separate shards
    return {"paths": paths, "cat": cat, "rows": rows, "planted": [real[i]["sample_id"] for i in picks], "start": last.start}


def test_the_guard_blocks_copies_of_a_restricted_real_set(data):
    planted = data["rows"][data["start"]:]
    assert [r["status"] for r in planted] == ["blocked_real_copy"] * len(planted)
    assert [r["real_pixel_nn_id"] for r in planted] == data["planted"]
    # every row was compared with the restricted set by CLIP (stored embeddings) and by pixels
    assert all(r["real_nn_similarity"] is not None and r["real_pixel_distance"] is not None for r in data["rows"])


def test_closest_pairs_report_shows_only_the_synthetic_side_of_restricted_pairs(data):
    from PIL import Image

    from flows.outputs.images import write_real_pairs

    v = open_version(data["cat"], "digits-guarded")
    path = write_real_pairs(data["cat"], v.name, v.version, v.files, "digits-real")
    assert Image.open(path).width == 16 * 4 + 2 * 2  # one column of 16-px images at scale 4, padded


def cli(data, *args):
    return CliRunner().invoke(app, ["--data-dir", str(data["paths"].root), *args])


@pytest.mark.parametrize("args", [
    ["load", "digits-real"],
    ["query", "SELECT count(*) FROM digits_real"],
    ["audit", "{real_id}"],
    ["mix", "digits-guarded", "digits-real", "--name", "mixed", "--ratio", "0.04"],
])
def test_cli_readers_need_allow_restricted(data, args):
    args = [a.format(real_id=data["planted"][0]) for a in args]
    r = cli(data, *args)
    assert r.exit_code == 2 and "restricted" in r.output, r.output
    assert not data["cat"].exists("mixed")
    r = cli(data, *args, "--allow-restricted")
    assert r.exit_code == 0, r.output


def test_cli_export_needs_allow_restricted_and_writes_nothing_without(data, tmp_path):
    dest = tmp_path / "real.parquet"
    r = cli(data, "export", "digits-real", str(dest))
    assert r.exit_code == 2 and "restricted" in r.output and not dest.exists()
    assert cli(data, "export", "digits-real", str(dest), "--allow-restricted").exit_code == 0 and dest.exists()


def test_the_closest_pairs_report_leaves_out_blocked_copies_of_a_restricted_set(data):
    """The report image goes to MLflow: against a restricted real set it shows no copy of its images."""
    from types import SimpleNamespace

    from PIL import Image

    from flows.outputs.reports import RealPairs
    from synthgen.imaging import decode

    cat = data["cat"]
    v = open_version(cat, "digits-guarded", allow_restricted=True)  # the test reads the copies to look for them
    rows = v.table(["image", "status"], status="all").to_pylist()
    blocked = [np.asarray(decode(r["image"]["bytes"]).convert("L")) for r in rows if r["status"] == "blocked_real_copy"]
    assert blocked
    done = SimpleNamespace(catalog=cat, restricted=False,  # an open output guarded against a restricted set
                           job=SimpleNamespace(dedup=SimpleNamespace(real_dataset="digits-real")),
                           commit=SimpleNamespace(dataset=v.name, version=v.version, files=v.files,
                                                  excluded_files=v.excluded_files))
    logged = RealPairs().write(done)
    for path in logged.artifacts:
        sheet = np.asarray(Image.open(path).convert("L"))
        cell = blocked[0].shape[0] * 4  # make_grid: scale 4, padding 2
        tiles = [sheet[2 + y * (cell + 2): 2 + y * (cell + 2) + cell: 4, 2 + x * (cell + 2): 2 + x * (cell + 2) + cell: 4]
                 for y in range((sheet.shape[0] - 2) // (cell + 2)) for x in range((sheet.shape[1] - 2) // (cell + 2))]
        assert not any(np.array_equal(t, b) for t in tiles for b in blocked)
