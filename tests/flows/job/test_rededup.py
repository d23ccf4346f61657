"""rededup re-decides synthetic rows only: a real or mixed dataset is refused before anything is written, and
rows the memorisation guard blocked as copies of restricted real data become readable only with the flag."""

import numpy as np
import pyarrow as pa
import pytest

from catalog import Catalog, CatalogError, RestrictedError, open_version, samples_to_table
from flows.job.rededup import rededup
from synthgen.records import KEPT, REAL_COPY
from tests.conftest import make_samples

COPY_SIMILARITY = 0.95  # how close each blocked row's embedding is to the real image it copies


@pytest.mark.parametrize("origin", ["real", "mixed"])
def test_rededup_refuses_a_dataset_that_is_not_synthetic(tmp_path, origin):
    cat = Catalog(tmp_path)
    cat.create("d", origin)
    with cat.lock("d"):
        cat.commit("d", [cat.write_shard("d", samples_to_table(make_samples(4, origin="real")))])
    with pytest.raises(CatalogError, match=f"rededup needs a synthetic dataset; 'd' is {origin}"):
        rededup(cat, "d", 0.9)
    assert [m.version for m in cat.versions("d")] == [1]


def guarded(tmp_path, restricted: bool = False) -> Catalog:
    """A restricted real set `private` and a synthetic `gen` (restricted or not): 2 kept rows and 2 rows the guard
    blocked at real threshold 0.9 as copies of `private`'s first two images (CLIP similarity 0.95)."""
    cat = Catalog(tmp_path / "catalog")
    cat.create("private", "real", restricted=True)
    real = samples_to_table(make_samples(6, "real", dim=8), embedding_model="test-clip")
    cat.commit("private", [cat.write_shard("private", real)])
    samples = make_samples(4, start=50, dim=8)
    for s, r in zip(samples[2:], real["embedding"].to_pylist()):  # unit vectors at cosine 0.95 to a real one
        r = np.asarray(r, np.float32)
        side = s.embedding - (s.embedding @ r) * r
        s.embedding = COPY_SIMILARITY * r + np.sqrt(1 - COPY_SIMILARITY**2) * side / np.linalg.norm(side)
        s.status, s.real_nn_similarity = REAL_COPY, COPY_SIMILARITY
    t = samples_to_table(samples, embedding_model="test-clip")
    for column, values in (("real_dataset", ["private"] * 4), ("real_threshold", [0.9] * 4)):
        t = t.set_column(t.schema.get_field_index(column), column, pa.array(values, t.schema.field(column).type))
    cat.create("gen", "synthetic", restricted=restricted)
    cat.commit("gen", cat.write_split("gen", t), embedding_model="test-clip")
    return cat


def test_rededup_does_not_release_blocked_copies_of_restricted_data_without_the_flag(tmp_path):
    cat = guarded(tmp_path)
    shards = sorted((cat.path("gen") / "shards").iterdir())
    with pytest.raises(RestrictedError, match="2 rows that the memorisation guard blocked.*--allow-restricted"):
        rededup(cat, "gen", 0.97, real_threshold=0.99)
    assert [m.version for m in cat.versions("gen")] == [1] and sorted((cat.path("gen") / "shards").iterdir()) == shards
    assert open_version(cat, "gen").table(status="all").num_rows == 2  # the copies are still withheld

    m = rededup(cat, "gen", 0.97, real_threshold=0.9)  # thresholds that still block them need no flag
    assert m.rows_by_status == {KEPT: 2, REAL_COPY: 2} and open_version(cat, "gen").table(status="all").num_rows == 2

    m = rededup(cat, "gen", 0.97, real_threshold=0.99, allow_restricted=True)  # the data owner releases them
    assert m.rows_by_status == {KEPT: 4} and m.prov["wasGeneratedBy"]["released_restricted_copies"] == 2
    assert open_version(cat, "gen").table().num_rows == 4


def test_rededup_of_a_restricted_dataset_needs_no_flag(tmp_path):
    """Its rows are readable only with the flag whatever their status: keeping the copies releases nothing."""
    cat = guarded(tmp_path / "r", restricted=True)
    assert rededup(cat, "gen", 0.97, real_threshold=0.99).rows_by_status == {KEPT: 4}
