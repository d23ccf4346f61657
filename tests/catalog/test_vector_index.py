import json
import shutil

import faiss
import numpy as np
import pytest

from catalog import Catalog, CatalogError, open_version, samples_to_table
from catalog import vector_index as vi
from catalog.derive import takedown
from catalog.version import embeddings_of
from synthgen.vector_set import VectorSet
from tests.conftest import make_samples

faiss.omp_set_num_threads(1)

MODEL = "test-embedder"
NAME = "ds"


def commit(cat, n, start, copy_of=None):
    """Commit ``n`` rows (every 5th dropped, so kept rows are a subset); returns the version number."""
    rows = make_samples(n, start=start)
    for r in rows[::5]:
        r.status = "dropped_duplicate"
    if copy_of is not None:  # a kept row whose embedding equals an earlier row's: a tie
        rows[1].embedding = copy_of.copy()
    cat.create(NAME, "synthetic")
    with cat.lock(NAME):
        return cat.commit(NAME, [cat.write_shard(NAME, samples_to_table(rows, embedding_model=MODEL))]).version


def kept(cat, version):
    ids, emb, _ = embeddings_of(open_version(cat, f"{NAME}@{version}"))
    return ids, emb


def segment_files(cat):
    return sorted(p.name for p in (cat.path(NAME) / "index").iterdir())


def queries(cat, version, seed=1):
    """The version's own kept vectors, near copies of them, and random unit vectors."""
    _, emb = kept(cat, version)
    rng = np.random.default_rng(seed)
    near = emb + rng.normal(scale=0.05, size=emb.shape)
    rand = rng.normal(size=(50, emb.shape[1]))
    q = np.concatenate([emb, near, rand]).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.fixture
def builds(monkeypatch):
    """Counts the segments built (FAISS indexes made), to tell loaded from rebuilt."""
    calls = []

    def counting(emb, **kw):
        calls.append(len(emb))
        return real(emb, **kw)

    real = vi.build_index
    monkeypatch.setattr(vi, "build_index", counting)
    return calls


def test_index_is_persisted_and_reused(tmp_path, builds):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    first = vi.version_index(cat, NAME, MODEL)
    path = vi.index_path(cat, NAME, 1)
    assert path.is_file() and not first.loaded and builds == [16]
    meta = json.loads(path.read_text())
    assert meta["embedding_model"] == MODEL and meta["dim"] == 8 and meta["rows"] == 16
    assert [s["kind"] for s in meta["segments"]] == ["flat"]
    assert first.ids == kept(cat, 1)[0]
    before = path.stat().st_mtime_ns

    again = vi.version_index(cat, f"{NAME}@1", MODEL)
    assert again.loaded and builds == [16]  # read back, nothing built
    assert path.stat().st_mtime_ns == before
    q = queries(cat, 1)
    assert again.nearest(q)[1] == first.nearest(q)[1]


def test_old_version_keeps_its_index(tmp_path):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    v1 = vi.version_index(cat, NAME, MODEL)
    v1_json = vi.index_path(cat, NAME, 1).read_bytes()
    for start in (100, 200):
        commit(cat, 20, start)
        vi.version_index(cat, NAME, MODEL)
    assert vi.index_path(cat, NAME, 1).read_bytes() == v1_json
    reloaded = vi.load_index(cat, NAME, 1, MODEL)
    assert reloaded.records == v1.records and reloaded.ids == kept(cat, 1)[0]
    _, later = kept(cat, 3)
    _, got = reloaded.nearest(later)  # version 3's rows: the answers are version 1's rows only
    assert set(got) <= set(kept(cat, 1)[0])
    assert vi.load_index(cat, NAME, 3, MODEL).ntotal == 48


def test_new_version_adds_one_segment(tmp_path, builds):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    v1 = vi.version_index(cat, NAME, MODEL)
    files = segment_files(cat)
    commit(cat, 10, 100)
    v2 = vi.version_index(cat, NAME, MODEL, parent=v1)
    assert builds == [16, 8]  # only the new kept rows were indexed
    assert v2.records[:1] == v1.records and len(v2.records) == 2
    added = set(segment_files(cat)) - set(files)
    assert set(files) <= set(segment_files(cat)) and len(added) == 2  # one .faiss + one .ids.json
    assert v2.ids == kept(cat, 2)[0]


def test_search_over_segments_equals_one_flat_index(tmp_path):
    cat = Catalog(tmp_path)
    commit(cat, 30, 0)
    _, emb1 = kept(cat, 1)
    commit(cat, 30, 100, copy_of=emb1[3])  # ties with a version-1 row: the earlier row must win
    commit(cat, 30, 200)
    commit(cat, 5, 300)
    index = vi.version_index(cat, NAME, MODEL)
    assert len(index.records) == 4
    ids, emb = kept(cat, 4)
    flat = VectorSet.build(ids, emb)
    q = queries(cat, 4)
    sims, got = index.nearest(q)
    want_sims, want = flat.nearest(q)
    assert got == want
    np.testing.assert_array_equal(sims, want_sims)
    tie = ids.index("s00101")  # the copied row (kept: rows[1]); its nearest is the version-1 original
    assert got[tie] == kept(cat, 1)[0][3]


def test_lazy_build_equals_build_after_each_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(vi, "MERGE_FACTOR", 2)  # compaction happens on the way
    cat = Catalog(tmp_path)
    incremental = None
    for start in (0, 100, 200, 300):
        commit(cat, 10 + start // 50, start)
        incremental = vi.version_index(cat, NAME, MODEL, parent=incremental)
    written = {v: vi.index_path(cat, NAME, v).read_bytes() for v in range(1, 5)}
    assert len(incremental.records) < 4  # merged

    shutil.rmtree(cat.path(NAME) / "index")
    for v in range(1, 5):
        vi.index_path(cat, NAME, v).unlink()
    lazy = vi.version_index(cat, f"{NAME}@4", MODEL)
    assert {v: vi.index_path(cat, NAME, v).read_bytes() for v in range(1, 5)} == written
    q = queries(cat, 4)
    assert lazy.nearest(q)[1] == incremental.nearest(q)[1]
    assert lazy.ids == kept(cat, 4)[0]


@pytest.mark.parametrize("target", ["faiss", "ids", "index.json"])
def test_corrupted_index_is_rebuilt_not_trusted(tmp_path, builds, target):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    built = vi.version_index(cat, NAME, MODEL)
    path = vi.index_path(cat, NAME, 1)
    if target != "index.json":
        path = cat.path(NAME) / built.records[0][target]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.warns(UserWarning, match="ignoring index"):
        assert vi.load_index(cat, NAME, 1, MODEL) is None
    with pytest.warns(UserWarning, match="ignoring index"):
        rebuilt = vi.version_index(cat, NAME, MODEL)
    assert not rebuilt.loaded and builds == [16, 16]
    assert rebuilt.records == built.records  # the same content, rewritten in place
    assert vi.load_index(cat, NAME, 1, MODEL).loaded


def test_ivf_beyond_the_exact_limit(tmp_path, monkeypatch, builds):
    monkeypatch.setattr(vi, "EXACT_INDEX_LIMIT", 50)
    cat = Catalog(tmp_path)
    commit(cat, 150, 0)  # 120 kept
    v1 = vi.version_index(cat, NAME, MODEL)
    assert [r["kind"] for r in v1.records] == ["ivf"]
    assert isinstance(faiss.downcast_index(v1.parts[0].index), faiss.IndexIVFFlat)
    loaded = vi.load_index(cat, NAME, 1, MODEL)
    assert faiss.extract_index_ivf(loaded.parts[0].index).nprobe == v1.records[0]["nprobe"]

    commit(cat, 38, 1000)  # 30 kept: an exact segment
    v2 = vi.version_index(cat, NAME, MODEL)
    assert [r["kind"] for r in v2.records] == ["ivf", "flat"]
    commit(cat, 38, 2000)  # 30 more: exact segments would hold 60 > 50, so the two merge into an IVF one
    v3 = vi.version_index(cat, NAME, MODEL)
    assert [(r["kind"], r["rows"]) for r in v3.records] == [("ivf", 120), ("ivf", 60)]
    assert v3.records[0] == v1.records[0] and v3.ids == kept(cat, 3)[0]
    commit(cat, 38, 3000)  # 30 kept: exact
    vi.version_index(cat, NAME, MODEL)
    builds.clear()
    commit(cat, 100, 4000)  # 80 kept: IVF, which the exact segment before it joins
    v5 = vi.version_index(cat, NAME, MODEL)
    assert [(r["kind"], r["rows"]) for r in v5.records] == [("ivf", 120), ("ivf", 60), ("ivf", 110)]
    assert builds == [110]  # the new rows are built once, in the merged segment
    ids, emb = kept(cat, 5)
    sims, got = v5.nearest(emb)
    assert got == ids  # every kept row finds itself
    np.testing.assert_allclose(sims, 1.0, atol=1e-5)


def test_version_that_drops_rows_gets_exactly_its_kept_rows(tmp_path):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    commit(cat, 20, 100)
    v2 = vi.version_index(cat, NAME, MODEL)
    v2_json = vi.index_path(cat, NAME, 2).read_bytes()
    takedown(cat, NAME, "sample_id IN ('s00001', 's00102')", "test")
    v3 = vi.version_index(cat, NAME, MODEL, parent=v2)
    assert v3.ids == kept(cat, 3)[0] and "s00001" not in v3.ids and "s00102" not in v3.ids
    assert vi.index_path(cat, NAME, 2).read_bytes() == v2_json
    assert {"s00001", "s00102"} <= set(vi.load_index(cat, NAME, 2, MODEL).ids)


def test_rows_of_another_model_are_reembedded(tmp_path):
    cat = Catalog(tmp_path)
    commit(cat, 20, 0)
    seen = []

    def reembed(images):
        seen.append(len(images))
        rng = np.random.default_rng(len(images))
        x = rng.normal(size=(len(images), 4)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    with pytest.raises(CatalogError, match="without re-embedding"):
        vi.version_index(cat, NAME, "other-model")
    other = vi.version_index(cat, NAME, "other-model", reembed)
    assert seen == [16] and other.dim == 4 and other.ids == kept(cat, 1)[0]
    assert vi.load_index(cat, NAME, 1, "other-model").loaded
    assert vi.load_index(cat, NAME, 1, MODEL) is None  # another model's index is not this one
    assert vi.version_index(cat, NAME, MODEL).dim == 8


def test_empty_version_has_an_empty_index(tmp_path):
    cat = Catalog(tmp_path)
    rows = make_samples(3)
    for r in rows:
        r.status = "dropped_duplicate"
    cat.create(NAME, "synthetic")
    with cat.lock(NAME):
        cat.commit(NAME, [cat.write_shard(NAME, samples_to_table(rows, embedding_model=MODEL))])
    index = vi.version_index(cat, NAME, MODEL)
    sims, got = index.nearest(np.ones((2, 8), np.float32))
    assert index.records == [] and got == [None, None] and np.isneginf(sims).all()
    assert vi.load_index(cat, NAME, 1, MODEL).loaded


def test_plan_compaction():
    plan = vi.plan_compaction
    assert plan([], 100, 4) == [] and plan([5, 5, 5], 100, 4) == [(0, 1), (1, 2), (2, 3)]
    # four adjacent segments of one size level merge, the newest run first
    assert plan([70, 5, 5, 5, 5], 1000, 4) == [(0, 1), (1, 5)]
    assert plan([20, 5, 5, 5, 6], 1000, 4) == [(0, 1), (1, 5)]
    assert plan([20, 5, 5, 5], 1000, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    # cascades: the merged segment completes a run of the level above
    assert plan([16, 16, 16, 4, 4, 4, 4], 1000, 4) == [(0, 7)]
    # exact segments hold at most the limit together; beyond, they become one (IVF) segment
    assert plan([200, 60, 50], 100, 4) == [(0, 1), (1, 3)]
    assert plan([200, 60, 30], 100, 4) == [(0, 1), (1, 2), (2, 3)]
    # exact segments just before an IVF one join it (it is built once, with them)
    assert plan([900, 30, 20, 150], 100, 4) == [(0, 1), (1, 4)]


def test_compaction_keeps_segments_few_and_exact_rows_bounded():
    """1k-row commits up to 2M rows: few segments, few rewrites, at most the limit scanned exactly."""
    sizes, written, most = [], 0, 0
    for _ in range(2000):
        sizes.append(1000)
        new = []
        for a, b in vi.plan_compaction(sizes, 100_000, 4):
            new.append(sum(sizes[a:b]))
            written += new[-1] if b == len(sizes) or b - a > 1 else 0  # built: the new or a merged segment
        sizes = new
        most = max(most, len(sizes))
        assert sum(s for s in sizes if s <= 100_000) <= 100_000
    assert sum(sizes) == 2_000_000 and most <= 16 and written / 2_000_000 < 8
