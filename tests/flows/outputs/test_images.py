"""The report images read only the rows they show, and show what a full read would."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from catalog import Catalog, samples_to_table
from flows.outputs.images import images_at, write_grid
from synthgen.imaging import decode, make_grid
from synthgen.records import DUPLICATE
from tests.conftest import make_samples


def test_images_at_reads_the_asked_rows_across_row_groups(tmp_path):
    rows = [f"png{i}".encode() for i in range(10)]
    t = pa.table({"image": pa.array([{"bytes": b, "path": None} for b in rows]), "n": list(range(10))})
    pq.write_table(t, tmp_path / "f.parquet", row_group_size=3)
    assert pq.ParquetFile(tmp_path / "f.parquet").num_row_groups == 4
    assert images_at(str(tmp_path / "f.parquet"), [9, 0, 4, 4]) == {0: rows[0], 4: rows[4], 9: rows[9]}


def test_grid_shows_the_first_kept_rows_of_each_label(tmp_path):
    cat = Catalog(tmp_path)
    cat.create("d", "synthetic")
    samples = make_samples(30)
    for s in samples[::4]:
        s.status = DUPLICATE
    with cat.lock("d"):
        files = [cat.write_shard("d", samples_to_table(samples[:13])), cat.write_shard("d", samples_to_table(samples[13:]))]
        m = cat.commit("d", files)
    from catalog import open_version

    v = open_version(cat, "d")
    out = write_grid(cat, "d", m.version, v.files, per_row=4)
    expected: dict[str, list] = {}
    for s in samples:
        if s.status == "kept" and len(expected.setdefault(s.class_name, [])) < 4:
            expected[s.class_name].append(decode(s.png))
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(make_grid(list(expected.values()))))
