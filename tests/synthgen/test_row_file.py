import faiss
import numpy as np
import pytest

from synthgen.index import ADD_ROWS, build_index, describe
from synthgen.row_file import CHUNK_ROWS, RowFile

faiss.omp_set_num_threads(1)


def unit_rows(n, d, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def stored(tmp_path, x):
    path = tmp_path / "rows.f32"
    x.tofile(path)
    return RowFile(path, x.shape[1])


def test_rows_read_from_the_file_equal_the_array(tmp_path):
    x = unit_rows(CHUNK_ROWS + 1000, 4)
    rows = stored(tmp_path, x)
    assert rows.shape == x.shape and len(rows) == len(x)
    np.testing.assert_array_equal(rows[10:20], x[10:20])
    np.testing.assert_array_equal(rows[len(x) - 5 :], x[len(x) - 5 :])
    idx = np.array([CHUNK_ROWS + 999, 3, CHUNK_ROWS, 3, 0])  # unsorted, repeated, across chunks
    np.testing.assert_array_equal(rows[idx], x[idx])
    assert rows[np.array([], dtype=np.int64)].shape == (0, 4)
    with pytest.raises(IndexError):
        rows[np.array([len(x)])]


def test_a_file_that_is_not_whole_rows_is_refused(tmp_path):
    (tmp_path / "bad.f32").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="whole number"):
        RowFile(tmp_path / "bad.f32", 4)


def test_an_index_built_from_a_row_file_is_the_one_built_from_the_array(tmp_path):
    # More rows than one add, so the file is added in several chunks; IVF as for a large guard.
    x = unit_rows(ADD_ROWS + 5000, 16, seed=1)
    from_array = build_index(x, exact_limit=1000, nlist=64)
    from_file = build_index(stored(tmp_path, x), exact_limit=1000, nlist=64)
    assert describe(from_file) == describe(from_array) and describe(from_file).kind == "ivf"
    assert bytes(faiss.serialize_index(from_file)) == bytes(faiss.serialize_index(from_array))
    flat = build_index(stored(tmp_path, x[:3000]))
    assert bytes(faiss.serialize_index(flat)) == bytes(faiss.serialize_index(build_index(x[:3000])))


def test_rows_after_a_header_are_handed_out_transformed(tmp_path):
    x = unit_rows(CHUNK_ROWS + 10, 8, seed=2)
    path = tmp_path / "with-header.bin"
    path.write_bytes(b"header!" + x.tobytes())
    rows = RowFile(path, 8, offset=7, transform=lambda r: r[:, :2] * 2, dim=2)
    assert rows.shape == (len(x), 2)
    np.testing.assert_array_equal(rows[5:9], x[5:9, :2] * 2)
    idx = np.array([CHUNK_ROWS + 9, 1])
    np.testing.assert_array_equal(rows[idx], x[idx, :2] * 2)
