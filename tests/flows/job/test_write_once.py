"""Shards decided in plan order by the driver and written once: the version equals one decision over the whole job.

Also: shards staged by workers in any order give the same rows, the training
files hold kept rows only, and a head that moved between the decisions and
the publish is checked and the job's duplicates of it excluded.
"""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from catalog import Catalog, RunRef, ingest_folder, open_version
from catalog.schema import samples_from_table
from catalog.verify import verify
from flows.job.components import load_job_embedder, load_job_generator
from flows.job.decisions import DECISION_INPUTS, version_vectors
from flows.job.run import run_job
from flows.settings import configure
from synthgen.dedup import NearDuplicatePass
from synthgen.digits import load_digits_uint8, upsample
from synthgen.plan import make_shards
from synthgen.rules import build_rules, evidence_columns
from synthgen.spec import parse_spec
from tests.conftest import small_job
from tests.flows.job.partial_runs import decide_shards, injected, stage_shards

RUNS = RunRef(prefect_flow_run_id="write-once", mlflow_run_id=None)
PER_RUN = ["prefect_flow_run_id", "mlflow_run_id", "created_at"]


class SomeCopies:
    """The embedded generator, but every fifth sample (from plan index 3 on) is one same real digit.

    Exact copies across shards: one is kept (or blocked), the others tie at cosine 1.0.
    """

    def __init__(self, inner):
        self.inner = inner
        images, _ = load_digits_uint8()
        self.copy = (upsample(images[1500:1501], 16)[0] * 255).round().astype(np.uint8)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, samples):
        arrays = self.inner.generate(samples)
        for i, s in enumerate(samples):
            if s.plan_index % 5 == 3:
                arrays[i] = self.copy[..., None]
        return arrays


def job(**over) -> dict:
    # 3 classes x 8 = 24 samples in 4 shards of 6; threshold 0.9 drops natural near-duplicates too
    spec = small_job(dataset="digits-once", per_class=8, dedup={"threshold": 0.9, "real_dataset": "digits-real"},
                     **over)
    spec["output"]["shard_size"] = 6
    spec["generator"]["batch_size"] = 6
    return spec


@pytest.fixture(scope="module")
def seed(tmp_path_factory, real_digits_dir, embedder):
    """Real digits and a first version of the dataset (so the job decides against an earlier version too)."""
    root = tmp_path_factory.mktemp("write-once")
    paths = configure(root / "seed")
    ingest_folder(Catalog(paths.catalog), "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    first = parse_spec(job(seed=99, images_per_condition=4))
    run(first, paths)
    return root


def fresh(seed, name):
    shutil.copytree(seed / "seed", seed / name)
    return configure(seed / name)


def copies(spec, paths):
    """The spec's components, its generator wrapped to make some exact copies."""
    return injected(spec, paths, SomeCopies(load_job_generator(spec)))


def run(spec, paths, catalog=None):
    result = run_job(spec, paths=paths, runs=RUNS, setup=copies(spec, paths), catalog=catalog)
    return result.shards, result.commit


def added_rows(cat, ref):
    """The rows a version added (its job's), training and excluded, in plan order."""
    v = open_version(cat, ref)
    added = set(v.manifest.added_shards)
    t = pa.concat_tables([pq.read_table(cat.path(v.name) / s.file) for s in v.manifest.shards if s.sha256 in added])
    return t.take(pc.sort_indices(t["plan_index"]))


def one_pass(cat, spec, rows, parent_ref):
    """Today's whole-job decision over the same stored samples: one NearDuplicatePass in plan order."""
    emb = load_job_embedder(spec)
    samples = samples_from_table(rows.select(DECISION_INPUTS + evidence_columns()))
    d = spec.dedup
    NearDuplicatePass(d.threshold, build_rules(d), version_vectors(cat, parent_ref, emb),
                      version_vectors(cat, "digits-real", emb),
                      d.keep)(samples)
    return samples


def assert_same_decisions(rows, samples):
    assert rows["status"].to_pylist() == [s.status for s in samples]
    assert rows["nn_id"].to_pylist() == [s.nn_id for s in samples]
    assert rows["nn_source"].to_pylist() == [s.nn_source for s in samples]
    assert rows["real_nn_id"].to_pylist() == [s.real_nn_id for s in samples]
    # one product per shard instead of one per job: BLAS may round the last bit differently
    assert rows["nn_similarity"].to_pylist() == pytest.approx([s.nn_similarity for s in samples], abs=1e-6)


def assert_same_shards(a: Catalog, b: Catalog) -> None:
    """The head versions of digits-once in ``a`` and ``b``: same rows, same decisions, bit for bit."""
    for sa, sb in zip(a.manifest("digits-once").shards, b.manifest("digits-once").shards, strict=True):
        ta = pq.read_table(a.path("digits-once") / sa.file).drop_columns(PER_RUN)
        tb = pq.read_table(b.path("digits-once") / sb.file).drop_columns(PER_RUN)
        assert ta.equals(tb)


def test_version_equals_one_pass_and_trainers_read_kept_rows_only(seed):
    import datasets

    paths = fresh(seed, "in-order")
    spec = parse_spec(job())
    reports, commit = run(spec, paths)
    cat = Catalog(paths.catalog)
    assert not any(r.reused for r in reports) and commit.rewritten_shards == 0  # every image written once
    assert not list(paths.staging.rglob("*.parquet"))
    rows = added_rows(cat, "digits-once@2")
    samples = one_pass(cat, spec, rows, "digits-once@1")
    assert_same_decisions(rows, samples)
    statuses = rows["status"].to_pylist()
    copies = [s for s, p in zip(statuses, rows["plan_index"].to_pylist()) if p % 5 == 3]
    assert copies.count("dropped_duplicate") >= len(copies) - 1  # the copies tie at 1.0: the first one wins
    assert "kept" in statuses and len(set(statuses)) >= 2

    v = open_version(cat, "digits-once")
    kept = v.table(["sample_id"])
    assert v.files and v.excluded_files and set(v.all_files) == set(v.files) | set(v.excluded_files)
    hf = datasets.load_dataset("parquet", data_files=v.files, split="train", cache_dir=str(paths.root / "hf"))
    assert hf.num_rows == kept.num_rows == v.manifest.rows_by_status["kept"]
    assert set(hf["status"]) == {"kept"}
    everything = v.table(["status"], status="all")
    assert everything.num_rows == v.manifest.rows and set(everything["status"].to_pylist()) > {"kept"}
    assert verify(cat, "digits-once").ok


def test_shards_staged_by_workers_in_any_order_give_the_same_version(seed):
    ref_paths, paths = configure(seed / "in-order"), fresh(seed, "reversed")
    spec = parse_spec(job())
    shards = make_shards(spec.total_images, spec.output.shard_size)
    # work-pool workers stage their shards undecided, last shard first; the driver decides them in plan order
    stage_shards(spec, paths, RUNS, shards[::-1], copies(spec, paths))
    reports, commit = run(spec, paths)
    assert all(r.reused for r in reports) and commit.rewritten_shards == len(shards)  # staged, then written final
    a, b = Catalog(ref_paths.catalog), Catalog(paths.catalog)
    ma, mb = a.manifest("digits-once"), b.manifest("digits-once")
    assert [(s.role, s.rows) for s in ma.shards] == [(s.role, s.rows) for s in mb.shards]
    assert_same_shards(a, b)


def test_a_run_killed_after_some_decisions_resumes_to_the_same_version(seed):
    ref_paths, paths = configure(seed / "in-order"), fresh(seed, "resumed")
    spec = parse_spec(job())
    shards = make_shards(spec.total_images, spec.output.shard_size)
    decide_shards(spec, paths, RUNS, shards[:2], copies(spec, paths))  # killed after two decisions
    reports, commit = run(spec, paths)
    assert [r.reused for r in reports] == [True, True, False, False] and commit.rewritten_shards == 0
    assert_same_shards(Catalog(ref_paths.catalog), Catalog(paths.catalog))


def decided_job(seed, name):
    """A fresh catalog and a job whose shards are all generated and decided against version 1, not committed."""
    paths = fresh(seed, name)
    spec = parse_spec(job())
    decide_shards(spec, paths, RUNS, setup=copies(spec, paths))
    return paths, spec


def test_a_head_that_moved_before_the_publish_is_checked_and_its_duplicates_excluded(seed):
    paths, spec = decided_job(seed, "moved")
    # another job lands first: class 0's first images again (same seed), as version 2
    other = parse_spec(job(classes=(0,), images_per_condition=4))
    _, landed = run(other, paths)
    assert landed.version == 2
    _, commit = run(spec, paths)  # every shard decided: the commit alone
    cat = Catalog(paths.catalog)
    m = cat.manifest("digits-once", commit.version)
    assert commit.version == 3 and m.parent == 2 and m.prov["wasDerivedFrom"] == "digits-once@2"
    rows = added_rows(cat, "digits-once@3")
    assert_same_decisions(rows, one_pass(cat, spec, rows, "digits-once@2"))  # as if decided against version 2
    dup_of_other = [r for r in rows.to_pylist() if r["status"] == "dropped_duplicate" and r["nn_source"] == "dataset"
                    and r["nn_id"] in set(open_version(cat, "digits-once@2").table(["sample_id"], status="all")
                                          ["sample_id"].to_pylist()[-12:])]
    assert dup_of_other, "the job's copies of the other job's images are excluded"
    assert 1 <= commit.rewritten_shards < len(make_shards(spec.total_images, spec.output.shard_size))  # changed only
    v = open_version(cat, "digits-once")
    assert set(v.table(["status"])["status"].to_pylist()) == {"kept"}
    assert verify(cat, "digits-once").ok


class LandsAnotherJobFirst(Catalog):
    """A real catalog whose first publish finds that another job landed after the recheck.

    The other job commits for real, just before the first ``commit`` takes the lock:
    the publish then meets a moved head (``HeadMoved``) and must recheck and retry.
    """

    def __init__(self, root, other, paths):
        super().__init__(root)
        self.other, self.paths, self.commits = other, paths, 0

    def commit(self, *args, **kwargs):
        self.commits += 1
        if self.commits == 1:
            run(self.other, self.paths)
        return super().commit(*args, **kwargs)


def test_a_head_that_moves_during_the_publish_is_rechecked_and_the_publish_retried(seed):
    paths, spec = decided_job(seed, "race")
    other = parse_spec(job(classes=(0,), images_per_condition=4))
    racing = LandsAnotherJobFirst(paths.catalog, other, paths)
    _, commit = run(spec, paths, catalog=racing)
    assert racing.commits == 2, "the first publish met the moved head, the second landed"
    cat = Catalog(paths.catalog)
    m = cat.manifest("digits-once", commit.version)
    assert commit.version == 3 and m.parent == 2 and m.prov["wasDerivedFrom"] == "digits-once@2"
    rows = added_rows(cat, "digits-once@3")
    assert_same_decisions(rows, one_pass(cat, spec, rows, "digits-once@2"))
    assert commit.rewritten_shards >= 1
    assert verify(cat, "digits-once").ok


def test_two_jobs_at_once_both_land_deduplicated_in_commit_order(seed):
    from concurrent.futures import ThreadPoolExecutor

    paths = fresh(seed, "concurrent")
    # b repeats some of a's images; its own generator object (3 steps), as two processes would have
    a, b = parse_spec(job()), parse_spec(job(classes=(0, 1), images_per_condition=5, generator={"steps": 3}))
    with ThreadPoolExecutor(2) as pool:
        commits = [f.result()[1] for f in [pool.submit(run, a, paths), pool.submit(run, b, paths)]]
    cat = Catalog(paths.catalog)
    assert sorted(c.version for c in commits) == [2, 3] and cat.head("digits-once") == 3
    later = max(commits, key=lambda c: c.version)
    spec = a if later is commits[0] else b
    rows = added_rows(cat, "digits-once@3")
    assert_same_decisions(rows, one_pass(cat, spec, rows, "digits-once@2"))  # decided after the first to land
    assert cat.manifest("digits-once", 3).parent == 2 and verify(cat, "digits-once").ok


def test_rededup_at_the_jobs_thresholds_gives_back_its_statuses(seed):
    """Rededup reads kept and excluded shards back in plan order (files hold kept rows first)."""
    from flows.job.rededup import rededup

    paths = configure(seed / "in-order")  # after the tests above have read it
    cat = Catalog(paths.catalog)
    before = {r["sample_id"]: r["status"] for r in open_version(cat, "digits-once").table(status="all").to_pylist()}
    m = rededup(cat, "digits-once", threshold=0.9)
    after = {r["sample_id"]: r["status"] for r in open_version(cat, f"digits-once@{m.version}").table(
        status="all").to_pylist()}
    assert after == before and "dropped_duplicate" in after.values()
    assert {s.role for s in m.shards} == {"train", "excluded"}

