"""Who may read a restricted dataset's rows, and what counts as its data: only callers that say so.

A dataset ingested with ``restricted=True`` (e.g. licensed real images) may
be used *inside* the catalog (the memorisation guard's thumbnails, dedup's
vector indexes, integrity checks) but its rows, images, embeddings and
anything copied from them leave it only through readers called with
``allow_restricted=True``. Every reader in the catalog layer (versions,
loaders, remote and DVC reads, query, mix, export, push, audit, trace) calls
``require_access`` so no command has to remember to.

Rows derived from restricted rows travel with the restriction: a synthetic
row the memorisation guard blocked as a copy of a restricted image
(``copies_of_restricted``) is withheld like the image it copies.
"""

from __future__ import annotations

from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc

from catalog.errors import RestrictedError
from synthgen.records import KEPT, REAL_COPY

_FALSE = pa.scalar(False)
# The columns ``copies_of_restricted`` reads: a row's status and its memorisation-guard evidence.
GUARD_COLUMNS = ["status", "real_dataset", "real_threshold", "real_nn_similarity", "pixel_threshold",
                 "real_pixel_distance", "init_dataset"]

__all__ = ["GUARD_COLUMNS", "RestrictedError", "copies_of_restricted", "require_access", "sealed"]


def require_access(info: dict, allow_restricted: bool, what: str = "rows") -> None:
    """Raise ``RestrictedError`` when ``info`` (a dataset.json) is restricted and the caller did not allow it."""
    if info.get("restricted") and not allow_restricted:
        raise RestrictedError(
            f"{info.get('name', 'this dataset')} is restricted: reading its {what} needs allow_restricted=True "
            "(--allow-restricted on the command line)"
        )


def open_datasets(cat: Any) -> list[str]:
    """Names of ``cat``'s datasets that anyone may read."""
    return [n for n in cat.names() if not cat.info(n).get("restricted")]


def copies_of_restricted(cat: Any, table: pa.Table) -> pa.ChunkedArray:
    """Which rows of ``table`` are excluded rows that copy a restricted (or unknown) real dataset.

    A row counts when it is not kept, was guarded against a real dataset that
    is not an open one in ``cat`` (restricted, or absent: e.g. a pulled
    synthetic dataset whose real set stayed behind), and its evidence makes
    it a copy: blocked by the guard, or past the CLIP or pixel threshold.
    A row started from a real image of such a dataset (real-image guidance)
    and blocked counts too: it may copy its own source, even once its
    dataset is released (``catalog.release``).
    ``table`` needs the ``GUARD_COLUMNS``.
    """
    if table.num_rows == 0:
        return pa.chunked_array([pa.array([], pa.bool_())])
    return restricted_copy_test(open_datasets(cat), table.column)


def restricted_copy_test(open_names: list[str], col: Callable[[str], Any]) -> Any:
    """The test of ``copies_of_restricted`` over ``col(name)``: table columns (an array) or
    ``pyarrow.dataset.field`` (an expression Arrow applies while scanning, e.g. under DuckDB)."""
    real = col("real_dataset")
    closed = pc.and_kleene(pc.is_valid(real), pc.invert(pc.is_in(real, value_set=pa.array(open_names, pa.string()))))
    copy = pc.or_kleene(
        pc.equal(col("status"), REAL_COPY),
        pc.or_kleene(pc.coalesce(pc.greater_equal(col("real_nn_similarity"), col("real_threshold")), _FALSE),
               pc.coalesce(pc.less_equal(col("real_pixel_distance"), col("pixel_threshold")), _FALSE)))
    guarded = pc.coalesce(pc.and_kleene(pc.and_kleene(pc.not_equal(col("status"), KEPT), closed), copy), _FALSE)
    init = col("init_dataset")
    open_set = pa.array(open_names, pa.string())
    closed_init = pc.and_kleene(pc.is_valid(init), pc.invert(pc.is_in(init, value_set=open_set)))
    from_source = pc.coalesce(pc.and_kleene(pc.equal(col("status"), REAL_COPY), closed_init), _FALSE)
    return pc.or_kleene(guarded, from_source)


class Sealed:
    """A restricted dataset's index or guard that answers queries but hands none of its vectors out.

    Dedup and the memorisation guard only ask ``nearest`` questions of the
    real set; every other attribute (thumbnails, vectors, FAISS indexes,
    ids) raises ``RestrictedError`` unless the caller opened it with
    ``allow_restricted=True``.
    """

    __slots__ = ("__inner", "__name")
    _ANSWERS = frozenset({"nearest", "nearest_pixels", "ntotal", "dim", "dataset", "version", "embedding_model",
                          "loaded", "max_shift", "k"})

    def __init__(self, inner: Any, name: str):
        self.__inner = inner
        self.__name = name

    def __getattr__(self, attr: str) -> Any:
        if attr in Sealed._ANSWERS:
            return getattr(self.__inner, attr)
        raise RestrictedError(f"{self.__name} is restricted: its {attr!r} (derived from its images) needs "
                              "allow_restricted=True; without it, only nearest-neighbour answers are given")


def sealed(inner: Any, name: str, restricted: bool, allow_restricted: bool) -> Any:
    """``inner`` itself when anyone may read it, else a ``Sealed`` view of it."""
    return Sealed(inner, name) if restricted and not allow_restricted else inner
