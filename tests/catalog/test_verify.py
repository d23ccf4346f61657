import pytest

from catalog import Catalog, samples_to_table
from catalog.verify import verify
from tests.conftest import make_samples


@pytest.fixture
def chain(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    for start in (0, 10, 20):
        with cat.lock("ds"):
            cat.commit("ds", [cat.write_shard("ds", samples_to_table(make_samples(10, start=start)))])
    return cat


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_clean_catalog_verifies(chain):
    r = verify(chain, "ds")
    assert r.ok and r.manifests_checked == 3 and r.shards_checked == 3 and len(r.head_sha256) == 64


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_flipped_shard_byte_is_named(chain, which):
    shard = chain.path("ds") / chain.manifest("ds", 3).shards[which].file
    flip(shard, shard.stat().st_size // 2)
    r = verify(chain, "ds")
    assert not r.ok and any(shard.name in p for p in r.problems)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_flipped_manifest_byte_breaks_the_chain(chain, version):
    path = chain.manifest_path("ds", version)
    flip(path, 40)  # inside a JSON string: still parses, different bytes
    r = verify(chain, "ds")
    assert not r.ok and any(path.name in p for p in r.problems)


def test_missing_shard_is_reported(chain):
    shard = chain.path("ds") / chain.manifest("ds", 1).shards[0].file
    shard.unlink()
    assert any("missing" in p for p in verify(chain, "ds").problems)
