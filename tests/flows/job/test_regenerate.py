"""`verify --regenerate`: batched regeneration equals one-at-a-time, and tampering is reported by field.

The catalogs here are made by the real shard and commit steps (no Prefect
server needed): the embedded digits model, the embedded CLIP, real dedup.
"""

from __future__ import annotations

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from catalog import Catalog, open_version
from catalog.schema import SCHEMA
from flows.cli.app import app
from flows.job.regenerate import generator_for, regenerate_hashes, regenerate_sample_check
from flows.settings import Paths
from flows.job.run import run_job
from synthgen.imaging import array_to_pil, pixel_sha256
from synthgen.plan import make_plan
from synthgen.records import Sample
from synthgen.spec import parse_spec
from tests.conftest import small_job

COLS = ["sample_id", "seed", "label", "label_name", "prompt", "negative_prompt", "image_sha256", "model_id",
        "model_weights_sha256", "scheduler", "scheduler_config", "num_inference_steps", "guidance_scale",
        "batch_size", "dtype", "device", "width", "height"]


def commit_job(paths: Paths, **over):
    return run_job(parse_spec(small_job(dedup={"real_dataset": None}, **over)), paths=paths).commit


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    paths = Paths(tmp_path_factory.mktemp("regen"))
    commit_job(paths)  # 18 samples, batch size 8: batches of 8, 8 and a padded 2
    return paths


def test_batched_regeneration_is_identical_to_one_at_a_time(data):
    rows = open_version(Catalog(data.catalog), "digits-small@1").table(COLS, status="all").to_pylist()
    gen = generator_for(rows[0])
    samples = [Sample(r["sample_id"], "synthetic", seed=r["seed"], class_id=r["label"], class_name=r["label_name"])
               for r in rows]
    batched = regenerate_hashes(gen, samples)
    alone = [pixel_sha256(array_to_pil(gen.generate([s])[0])) for s in samples]
    assert len(rows) == 18 and gen.batch_size == 8
    assert batched == alone == [r["image_sha256"] for r in rows]


def test_regeneration_checks_every_chosen_row_in_one_group(data):
    result = regenerate_sample_check(Catalog(data.catalog), "digits-small@1", 100)
    assert (result.checked, result.matched, result.mismatches) == (18, 18, [])
    assert len(result.groups) == 1 and result.groups[0].settings["batch_size"] == 8
    assert result.elapsed_s > 0 and result.images_per_s == pytest.approx(18 / result.elapsed_s)


def test_rows_with_different_settings_are_regenerated_per_group(tmp_path):
    paths = Paths(tmp_path)
    commit_job(paths)
    commit_job(paths, seed=7, generator={"steps": 3})  # a second job into the same dataset, other settings
    result = regenerate_sample_check(Catalog(paths.catalog), "digits-small@2", 100)
    steps = sorted(g.settings["num_inference_steps"] for g in result.groups)
    assert steps == [3, 4] and [g.checked for g in result.groups] == [18, 18]
    assert result.matched == 36 and not result.mismatches


def tamper(cat: Catalog, name: str, edits: dict[str, dict]) -> str:
    """Commit a new version whose rows carry the given field values (as a corrupted catalog would)."""
    v = open_version(cat, name)
    shards = []
    for path in v.files:
        t = pq.read_table(path, schema=SCHEMA)
        for sid, fields in edits.items():
            mask = pc.equal(t["sample_id"], sid)
            for col, value in fields.items():
                i = SCHEMA.get_field_index(col)
                t = t.set_column(i, col, pc.if_else(mask, value, t[col]).cast(SCHEMA.field(col).type))
        shards.append(cat.write_shard(name, t))
    m = cat.commit(name, shards, keep_parent_shards=False, message="tampered")
    return f"{name}@{m.version}"


def test_a_changed_seed_or_hash_is_reported_with_the_differing_fields(data, tmp_path):
    import shutil

    root = tmp_path / "catalog"
    shutil.copytree(data.catalog, root)
    cat = Catalog(root)
    rows = open_version(cat, "digits-small@1").table(["sample_id", "seed", "image_sha256"], status="all").to_pylist()
    a, b = rows[3], rows[11]
    ref = tamper(cat, "digits-small", {a["sample_id"]: {"seed": a["seed"] + 1},
                                       b["sample_id"]: {"image_sha256": "0" * 64}})
    result = regenerate_sample_check(cat, ref, 100)
    assert result.checked == 18 and result.matched == 16
    by_id = {m.sample_id: m for m in result.mismatches}
    assert set(by_id) == {a["sample_id"], b["sample_id"]}
    assert by_id[a["sample_id"]].fields["seed"][0] == a["seed"] + 1
    assert by_id[a["sample_id"]].fields["seed"][1] == a["seed"]  # what the job's plan derives
    assert "image_sha256" in by_id[a["sample_id"]].fields
    assert by_id[b["sample_id"]].fields["image_sha256"] == ("0" * 64, b["image_sha256"])
    assert by_id[b["sample_id"]].fields["stored image pixel sha256"] == ("0" * 64, b["image_sha256"])
    assert result.groups[0].differing_fields == {"seed": 1, "image_sha256": 2, "stored image pixel sha256": 1}

    r = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "verify", ref, "--regenerate", "100"])
    assert r.exit_code == 1, r.output
    assert f"{a['sample_id']}: seed recorded {a['seed'] + 1}, found {a['seed']}" in r.output
    assert "16 identical, 2 differ" in r.output and "images/s" in r.output


def test_a_changed_weights_hash_is_reported_for_every_row_of_its_group(data, tmp_path):
    import shutil

    root = tmp_path / "catalog"
    shutil.copytree(data.catalog, root)
    cat = Catalog(root)
    ids = open_version(cat, "digits-small@1").table(["sample_id"], status="all")["sample_id"].to_pylist()
    ref = tamper(cat, "digits-small", {sid: {"model_weights_sha256": "f" * 64} for sid in ids})
    result = regenerate_sample_check(cat, ref, 100)
    assert result.checked == 18 and result.matched == 0
    assert all(m.fields["model_weights_sha256"][0] == "f" * 64 for m in result.mismatches)


def test_plan_seeds_match_what_the_catalog_recorded(data):
    spec = parse_spec(small_job(dedup={"real_dataset": None}))
    rows = open_version(Catalog(data.catalog), "digits-small@1").table(["sample_id", "seed"], status="all")
    assert dict(zip(rows["sample_id"].to_pylist(), rows["seed"].to_pylist())) == {
        s.sample_id: s.seed for s in make_plan(spec)}
