"""A matrix stored as raw rows in a file, indexed like an array but read only where asked.

Building an index over a million vectors needs the vectors twice at most: a training sample and
each row once as it is added. Reading them from a file as asked keeps only the index itself in
memory, where an array (or a memory map, whose pages count as the process's own once read) would
add the whole matrix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

CHUNK_ROWS = 16_384  # rows read at a time when gathering scattered rows


class RowFile:
    """Rows of ``width`` ``dtype`` items stored back to back in ``path`` from byte ``offset`` on, read as
    ``rows[a:b]`` or ``rows[int_array]``.

    ``transform`` (with its output width ``dim``) maps the rows read, a block at a time, to the rows
    handed out; it must work row by row (a row's result must not depend on the others read with it).
    E.g. index descriptors computed from stored thumbnails, so they are never stored themselves.
    """

    ndim = 2

    def __init__(self, path: str | Path, width: int, dtype=np.float32, offset: int = 0,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, dim: int | None = None):
        self.path, self.width, self.offset, self.transform = Path(path), width, offset, transform
        self.stored_dtype = np.dtype(dtype)
        self.dtype = self.stored_dtype if transform is None else np.dtype(np.float32)
        self.row_bytes = width * self.stored_dtype.itemsize
        size = os.path.getsize(self.path) - offset
        if size < 0 or size % self.row_bytes:
            raise ValueError(f"{self.path}: {size} bytes is not a whole number of {width}-wide {self.stored_dtype} rows")
        self.shape = (size // self.row_bytes, dim or width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("RowFile slices take no step")
            return self.read(start, stop)
        idx = np.asarray(key)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise IndexError("RowFile takes a slice or a 1-D array of row numbers")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row out of range for {len(self)} rows")
        out = np.empty((len(idx), self.shape[1]), self.dtype)
        order = np.argsort(idx, kind="stable")
        wanted = idx[order]
        for start in range(0, len(self), CHUNK_ROWS):
            a, b = np.searchsorted(wanted, [start, start + CHUNK_ROWS])
            if a < b:
                block = self._raw(start, min(len(self), start + CHUNK_ROWS))
                out[order[a:b]] = self._out(block[wanted[a:b] - start])
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` (a new array)."""
        return self._out(self._raw(start, stop))

    def _raw(self, start: int, stop: int) -> np.ndarray:
        stop = max(start, min(stop, len(self)))
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * self.row_bytes)
            return np.fromfile(f, self.stored_dtype, count=(stop - start) * self.width).reshape(-1, self.width)

    def _out(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.transform is None else np.ascontiguousarray(self.transform(rows), self.dtype)
