"""End to end through the real Prefect flow, MLflow on SQLite, FAISS and Parquet."""

import json

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from PIL import Image

from catalog import Catalog, RunRef, ingest_folder, open_version
from flows.generate import generate_dataset
from flows.settings import configure
from flows.job.run import run_job
from tests.flows.job.partial_runs import decide_shards
from synthgen.plan import make_shards
from synthgen.spec import parse_spec
from tests.conftest import small_job


def test_version_committed_with_full_provenance(demo_run):
    r, cat = demo_run["result"], demo_run["catalog"]
    assert (r["dataset"], r["version"], r["reused"]) == ("digits-small", 1, False)
    t = open_version(cat, "digits-small@1").table(status="all")
    assert t.num_rows == 18 == sum(r["counts"].values())
    rows = t.to_pylist()
    for row in rows:
        assert row["origin"] == "synthetic"
        assert row["prefect_flow_run_id"] == r["prefect_flow_run_id"]
        assert row["mlflow_run_id"] == r["mlflow_run_id"]
        assert row["model_id"] == "embedded:digits" and len(row["model_weights_sha256"]) == 64
        assert row["pipeline_class"] == "ClassConditionalPipeline"
        assert row["scheduler"] == "DPMSolverMultistepScheduler"
        assert json.loads(row["scheduler_config"])["num_train_timesteps"] == 1000
        assert row["num_inference_steps"] == 4 and row["guidance_scale"] == 2.0 and row["batch_size"] == 8
        assert row["seed"] is not None and row["image_sha256"] and (row["width"], row["height"]) == (16, 16)
        assert row["torch_version"] and row["diffusers_version"] and row["code_commit"]
        assert row["embedding_model"].startswith("embedded:digits-clip@") and len(row["embedding"]) > 0
        assert row["label_name"] in {"zero", "one", "seven"} and row["clip_score"] is not None
        assert row["status"] in {"kept", "dropped_duplicate", "blocked_real_copy"}
        assert row["real_dataset"] == "digits-real" and row["real_nn_id"].startswith("real-")
        assert row["created_at"] is not None
    # every row but the very first has a nearest neighbour, kept or not
    assert sum(row["nn_id"] is None for row in rows) <= 1
    dropped = [row for row in rows if row["status"] != "kept"]
    assert all(row["drop_reason"] for row in dropped)


def test_mlflow_run_has_params_metrics_artifacts_and_datasets(demo_run):
    r = demo_run["result"]
    client = MlflowClient(tracking_uri=r["mlflow_tracking_uri"])
    run = client.get_run(r["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["generator.steps"] == "4"
    assert run.data.params["output.dataset"] == "digits-small"
    assert run.data.metrics["generated"] == 18
    assert run.data.metrics["kept"] + run.data.metrics["dropped_duplicate"] + run.data.metrics["blocked_real_copy"] == 18
    assert run.data.metrics["images_per_s"] > 0
    # the quality report, from the stored embeddings, against digits-real
    assert 0 <= run.data.metrics["quality.coverage"] <= 1 and run.data.metrics["quality.diversity_ratio"] > 0
    assert run.data.metrics["quality.k"] == 5 and "quality.seven.recall" in run.data.metrics
    card = (demo_run["catalog"].version_dir("digits-small", 1) / "card.md").read_text()
    assert "## Quality against the real data" in card and "reference: **digits-real@1**" in card
    # The training-utility figure: in the card and in MLflow, from one report.
    ratio = run.data.metrics["quality.tstr_ratio"]
    assert "Training utility (linear probe" in card and f"| **{ratio:.3f}** |" in card
    assert run.data.metrics["quality.utility_train_rows"] == run.data.metrics["kept"] and 0 < run.data.metrics["quality.tstr"] <= 1
    assert run.data.tags["prefect.flow_run_id"] == r["prefect_flow_run_id"]
    names = {a.path for a in client.list_artifacts(r["mlflow_run_id"])}
    assert {"grid.png", "job.yaml", "000001.json", "card.md", "closest-real-pairs.png", "grids", "quality.png"} <= names
    grids = {a.path for a in client.list_artifacts(r["mlflow_run_id"], "grids")}
    classes = {c["name"] for c in demo_run["catalog"].manifest("digits-small", 1).job
               ["conditioning"]["classes"]}
    assert grids == {f"grids/{c}.png" for c in classes}  # every class has kept samples in this run
    inputs = {(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs}
    assert ("digits-small@1", "output") in inputs
    assert ("digits-real@1", "reference") in inputs
    digest = next(d.dataset.digest for d in run.inputs.dataset_inputs if d.dataset.name == "digits-small@1")
    cat = demo_run["catalog"]
    assert cat.manifest_sha256("digits-small", 1).startswith(digest)


def test_prefect_recorded_the_flow_and_shard_tasks(demo_run):
    import asyncio

    from prefect.client.orchestration import get_client

    async def fetch():
        async with get_client() as client:
            run = await client.read_flow_run(demo_run["result"]["prefect_flow_run_id"])
            tasks = await client.read_task_runs()
            return run, [t for t in tasks if t.flow_run_id == run.id]

    run, tasks = asyncio.run(fetch())
    assert run.state.is_completed()
    shard_tasks = [t.name for t in tasks if t.name.startswith("generate shard-")]
    assert len(shard_tasks) == 3  # 18 images, 8 per shard: shard-level tasks, not per image


def test_grid_and_manifest(demo_run):
    r = demo_run["result"]
    grid = Image.open(r["grid"])
    assert grid.width > 16 * 4 and grid.height >= 16 * 4
    m = demo_run["catalog"].manifest("digits-small", 1)
    assert m.job_digest == parse_spec(small_job()).digest()
    assert m.runs[0].mlflow_run_id == r["mlflow_run_id"]
    assert m.prov["wasGeneratedBy"]["activity"] == "synthgen.generate"
    for shard in m.shards:
        assert pq.read_metadata(demo_run["catalog"].path("digits-small") / shard.file).num_rows == shard.rows


def test_same_spec_twice_reuses_the_version(demo_run):
    again = generate_dataset(small_job(), str(demo_run["data"]))
    assert again["reused"] and again["version"] == 1
    assert demo_run["catalog"].head("digits-small") == 1


def test_new_job_appends_a_version_deduplicated_against_the_old(demo_run):
    result = generate_dataset(small_job(seed=5, per_class=3), str(demo_run["data"]))
    cat = demo_run["catalog"]
    m = cat.manifest("digits-small", 2)
    assert result["version"] == 2 and m.parent == 1 and m.rows == 18 + 9
    new = open_version(cat, "digits-small@2").table(status="all").to_pylist()[18:]
    assert {row["nn_source"] for row in new} <= {"run", "dataset", "real"}
    assert any(row["nn_source"] == "dataset" for row in new) or any(row["nn_source"] == "real" for row in new)


def test_rerun_after_a_crash_resumes_and_matches_a_clean_run(demo_run, real_digits_dir, embedder, tmp_path):
    job = small_job(dataset="digits-resume", per_class=5)
    spec = parse_spec(job)
    # a "crashed" earlier run finished shard 0 and died
    crashed = RunRef(prefect_flow_run_id="crashed-run", mlflow_run_id="crashed-mlflow")
    paths = configure(demo_run["data"])
    decide_shards(spec, paths, crashed, make_shards(spec.total_images, 8)[:1])
    resumed = generate_dataset(job, str(demo_run["data"]))
    assert resumed["metrics"]["shards_reused"] == 1
    assert resumed["metrics"]["generated_this_run"] == spec.total_images - 8
    rows = open_version(demo_run["catalog"], "digits-resume").table(status="all").to_pylist()
    assert {r["prefect_flow_run_id"] for r in rows[:8]} == {"crashed-run"}  # truthful provenance
    # a clean run elsewhere gives the same images and the same decisions
    clean_cat = Catalog(configure(tmp_path).catalog)
    ingest_folder(clean_cat, "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    generate_dataset(job, str(tmp_path))
    clean = open_version(clean_cat, "digits-resume").table(status="all")
    for col in ("sample_id", "image_sha256", "seed", "status", "nn_id", "real_nn_id"):
        assert [r[col] for r in rows] == clean[col].to_pylist(), col
    assert clean["image"].to_pylist() == [r["image"] for r in rows]


def test_dedup_decisions_do_not_depend_on_sharding(demo_run, tmp_path):
    """The same job in 1 shard or in many gives the same rows and the same decisions.

    Each shard is decided as it is generated, against the kept rows of the shards
    before it; similarities agree to float32 rounding (BLAS sums a product of another
    shape in another order), statuses and nearest neighbours exactly.
    """
    paths = configure(tmp_path)
    outcomes, sims = [], []
    for shard_size, name in ((48, "one-shard"), (8, "six-shards")):
        job = small_job(dataset=name, per_class=16, dedup={"threshold": 0.9, "real_dataset": None})
        job["output"]["shard_size"] = shard_size
        spec = parse_spec(job)
        run_job(spec, paths=paths, runs=RunRef(prefect_flow_run_id="p", mlflow_run_id="m"))
        t = open_version(Catalog(paths.catalog), name).table(status="all")
        rows = sorted(t.to_pylist(), key=lambda r: r["plan_index"])  # kept and excluded rows live in separate shards
        position = {r["sample_id"]: r["plan_index"] for r in rows}
        outcomes.append([(r["plan_index"], r["image_sha256"], r["status"], r["nn_source"], position.get(r["nn_id"]))
                         for r in rows])
        sims.append([r["nn_similarity"] for r in rows])
    assert len(outcomes[0]) == 48 and outcomes[0] == outcomes[1]
    assert sims[0][0] is sims[1][0] is None and sims[1][1:] == pytest.approx(sims[0][1:], abs=1e-6)
    assert any(status == "dropped_duplicate" for _, _, status, _, _ in outcomes[0])  # threshold 0.9 drops some
