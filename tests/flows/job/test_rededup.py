"""rededup re-decides synthetic rows only: a real or mixed dataset is refused before anything is written."""

import pytest

from catalog import Catalog, CatalogError, samples_to_table
from flows.job.rededup import rededup
from tests.conftest import make_samples


@pytest.mark.parametrize("origin", ["real", "mixed"])
def test_rededup_refuses_a_dataset_that_is_not_synthetic(tmp_path, origin):
    cat = Catalog(tmp_path)
    cat.create("d", origin)
    with cat.lock("d"):
        cat.commit("d", [cat.write_shard("d", samples_to_table(make_samples(4, origin="real")))])
    with pytest.raises(CatalogError, match=f"rededup needs a synthetic dataset; 'd' is {origin}"):
        rededup(cat, "d", 0.9)
    assert [m.version for m in cat.versions("d")] == [1]
