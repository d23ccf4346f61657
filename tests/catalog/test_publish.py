"""Pulling a version whose shards hold blocked copies of restricted real data needs the flag, as pushing it does."""

from __future__ import annotations

import pytest

from catalog import Catalog, RestrictedError, open_version, samples_to_table
from catalog.publish import pull, push
from tests.catalog.test_remote import published_copies
from tests.conftest import make_samples


def test_a_pull_of_blocked_copies_of_restricted_data_needs_the_flag(tmp_path):
    cat, url = published_copies(tmp_path)
    fresh = Catalog(tmp_path / "fresh")
    with pytest.raises(RestrictedError, match="gen@1 at .*: 2 excluded rows are blocked copies.*--allow-restricted"):
        pull(url, "gen", fresh)
    assert not fresh.exists("gen") and not (tmp_path / "fresh" / "gen").exists()  # refused before anything was written
    assert pull(url, "gen", fresh, allow_restricted=True).versions == [1]
    assert open_version(fresh, "gen").table(status="all").num_rows == 2  # still withheld here: `private` is absent
    assert open_version(fresh, "gen", allow_restricted=True).table(status="all").num_rows == 4
    # A later version is judged by the shards it would fetch: those already here are not fetched again.
    with cat.lock("gen"):
        cat.commit("gen", [cat.write_shard("gen", samples_to_table(make_samples(2, start=90, dim=8)))])
    push(cat, "gen", url, allow_restricted=True)
    assert pull(url, "gen", fresh).versions == [2]


def test_a_pull_of_copies_of_an_open_real_set_or_of_a_restricted_dataset_needs_no_flag(tmp_path):
    cat, url = published_copies(tmp_path)
    fresh = Catalog(tmp_path / "fresh")
    assert pull(url, "gen_public", fresh).versions == [1]
    assert pull(url, "private", fresh).versions == [1]  # restricted here too: its rows need the flag to be read
