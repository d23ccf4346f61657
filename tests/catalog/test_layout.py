from catalog import Catalog
from catalog.layout import head_key, head_line, manifest_key, parse_head, shard_file, version_dir_key
from catalog.schema import samples_to_table
from tests.conftest import make_samples


def test_the_local_catalog_writes_exactly_the_layout_keys(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("ds", "synthetic")
    ref = cat.write_shard("ds", samples_to_table(make_samples(3)))
    m = cat.commit("ds", [ref])
    assert ref.file == shard_file(ref.sha256) and (tmp_path / "ds" / ref.file).is_file()
    assert cat.manifest_path("ds", 1) == tmp_path / manifest_key("ds", 1)
    assert cat.version_dir("ds", 1) == tmp_path / version_dir_key("ds", 1)
    head = (tmp_path / head_key("ds")).read_bytes()
    assert head == head_line(1, cat.manifest_sha256("ds", 1)) and parse_head(head) == (1, cat.head_sha256("ds"))
    assert m.version == 1 and parse_head(None) == (0, None)
