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

A copy is shown only beside the image it copies: its real set must be open
*and* hold the very rows the copy was matched to (``judge_sources``). A name
alone proves nothing: an open dataset made under the name of a restricted
set that stayed behind (a pull, a catalog rebuilt) holds other rows, so the
copies stay withheld.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalog.errors import RestrictedError
from catalog.id_index import version_lacks
from synthgen.records import KEPT, REAL_COPY

_FALSE = pa.scalar(False)
# The columns ``copies_of_restricted`` reads: a row's status and its memorisation-guard evidence.
GUARD_COLUMNS = ["status", "real_dataset", "real_threshold", "real_nn_similarity", "pixel_threshold",
                 "real_pixel_distance", "init_dataset", "real_nn_id", "real_pixel_nn_id", "init_image_id"]
# Which real rows a copy was matched to, per column naming the real set: checked by ``judge_sources``.
_MATCHED = {"real_dataset": ("real_nn_id", "real_pixel_nn_id"), "init_dataset": ("init_image_id",)}
KEY_SEPARATOR = "\x00"  # between a real set's name and a row id in ``row_key``: in no dataset name

__all__ = ["GUARD_COLUMNS", "RestrictedError", "Sources", "copies_of_restricted", "judge_sources", "missing",
           "require_access", "row_key", "sealed"]


def require_access(info: dict, allow_restricted: bool, what: str = "rows") -> None:
    """Raise ``RestrictedError`` when ``info`` (a dataset.json) is restricted and the caller did not allow it."""
    if info.get("restricted") and not allow_restricted:
        raise RestrictedError(
            f"{info.get('name', 'this dataset')} is restricted: reading its {what} needs allow_restricted=True "
            "(--allow-restricted on the command line)"
        )


def open_datasets(cat: Any) -> list[str]:
    """Names of ``cat``'s datasets that anyone may read: open by ``dataset.json`` *and* by the flag sealed in
    their head manifest (a ``dataset.json`` edited to drop the flag, e.g. on a shared store, opens nothing)."""
    out = []
    for name in cat.names():
        if cat.info(name).get("restricted"):
            continue
        head = cat.head(name)
        if head is None or not cat.manifest(name, head).restricted:
            out.append(name)
    return out


@dataclass(frozen=True)
class Sources:
    """What decides which copies of real rows a reader may see: the open real sets, and the real rows
    copies were matched to that their (open) set does not hold at its head, each as ``row_key(set, id)``."""

    open: list[str]
    unheld: list[str] = field(default_factory=list)


def row_key(dataset: str, sample_id: str) -> str:
    """A real row named by its dataset and id (ids are unique within a dataset, not across datasets)."""
    return f"{dataset}{KEY_SEPARATOR}{sample_id}"



def judge_sources(cat: Any, table: pa.Table) -> Sources:
    """The open datasets of ``cat``, and the real rows ``table``'s copies of them were matched to that
    those datasets do not hold (taken down since, or another dataset under the name).

    A copy is shown only beside the very rows it copies: its real set must be open and hold, at its
    head, every real row the copy was matched to (``real_nn_id``, ``real_pixel_nn_id``,
    ``init_image_id``). Judged row by row, so a row reads the same alone (a web page, an audit) as in
    its whole version. ``table`` needs the ``GUARD_COLUMNS``.
    """
    names = open_datasets(cat)
    if table.num_rows == 0:
        return Sources(names)
    copies = table.filter(restricted_copy_test(Sources([]), table.column))  # every copy, as if no set were open
    unheld: set[str] = set()
    for source, id_columns in _MATCHED.items():
        for name in set(copies[source].drop_null().to_pylist()) & set(names):
            mine = copies.filter(pc.equal(copies[source], name))
            wanted = {i for c in id_columns for i in mine[c].drop_null().to_pylist()}
            if wanted:
                unheld |= {row_key(name, i) for i in missing(cat, name, wanted)}
    return Sources(names, sorted(unheld))


# One id looked up in the id index (a row group of each segment, then its row confirmed in its shard)
# costs about what scanning this many ids of the sample_id column does (bench/bench_access.py).
ROWS_PER_LOOKUP = 50_000


def missing(cat: Any, name: str, sample_ids: set[str]) -> set[str]:
    """The ids of ``sample_ids`` that the head of dataset ``name`` holds no row with.

    Few ids against a large set (a web page's row, an audit) are looked up in the head's id index;
    else, or with no index to trust, the head's ``sample_id`` column is scanned.
    """
    head = cat.head(name)
    if head is None:
        return set(sample_ids)
    manifest = cat.manifest(name, head)
    if len(sample_ids) * ROWS_PER_LOOKUP <= sum(ref.rows for ref in manifest.shards):
        lacked = version_lacks(cat, name, head, sample_ids)
        if lacked is not None:
            return lacked
    files = [str(cat.verified_shard(name, ref)) for ref in manifest.shards]
    if not files:
        return set(sample_ids)
    # Parquet, not pyarrow.dataset: this module is imported by every command, and that import costs ~0.2 s.
    ids = pa.concat_tables([pq.read_table(f, columns=["sample_id"]) for f in files])["sample_id"]
    found = ids.filter(pc.is_in(ids, value_set=pa.array(sorted(sample_ids), pa.string())))
    return set(sample_ids) - set(found.to_pylist())


def copies_of_restricted(cat: Any, table: pa.Table) -> pa.ChunkedArray:
    """Which rows of ``table`` are excluded rows that copy a restricted (or unknown) real dataset.

    A row counts when it is not kept, its evidence makes it a copy (blocked by the guard, or past the
    CLIP or pixel threshold), and it is not shown beside the real rows it copies: its real set is not
    an open one in ``cat`` (restricted, absent, e.g. a pulled synthetic dataset whose real set stayed
    behind), or that set does not hold every row the copy was matched to, or none was recorded
    (``judge_sources``). A row started from a real image of such a dataset (real-image guidance) and
    blocked counts too: it may copy its own source, even once its dataset is released
    (``catalog.release``). ``table`` needs the ``GUARD_COLUMNS``.
    """
    if table.num_rows == 0:
        return pa.chunked_array([pa.array([], pa.bool_())])
    return restricted_copy_test(judge_sources(cat, table), table.column)


def restricted_copy_test(sources: Sources, col: Callable[[str], Any]) -> Any:
    """The test of ``copies_of_restricted`` over ``col(name)``: table columns (an array) or
    ``pyarrow.dataset.field`` (an expression Arrow applies while scanning, e.g. under DuckDB)."""
    open_set = pa.array(sources.open, pa.string())
    unheld = pa.array(sources.unheld, pa.string())

    def gone(column: str) -> Any:  # the row was matched to a real row its set does not hold
        source = "init_dataset" if column == "init_image_id" else "real_dataset"
        key = pc.binary_join_element_wise(col(source), col(column), KEY_SEPARATOR)
        return pc.coalesce(pc.is_in(key, value_set=unheld), _FALSE)

    real = col("real_dataset")
    closed = pc.and_kleene(pc.is_valid(real), pc.invert(pc.is_in(real, value_set=open_set)))
    unproven = pc.and_kleene(pc.is_valid(real), pc.and_kleene(pc.is_null(col("real_nn_id")),
                                                              pc.is_null(col("real_pixel_nn_id"))))
    apart = pc.or_kleene(pc.or_kleene(closed, unproven), pc.or_kleene(gone("real_nn_id"), gone("real_pixel_nn_id")))
    copy = pc.or_kleene(
        pc.equal(col("status"), REAL_COPY),
        pc.or_kleene(pc.coalesce(pc.greater_equal(col("real_nn_similarity"), col("real_threshold")), _FALSE),
               pc.coalesce(pc.less_equal(col("real_pixel_distance"), col("pixel_threshold")), _FALSE)))
    guarded = pc.coalesce(pc.and_kleene(pc.and_kleene(pc.not_equal(col("status"), KEPT), apart), copy), _FALSE)
    init = col("init_dataset")
    closed_init = pc.and_kleene(pc.is_valid(init), pc.invert(pc.is_in(init, value_set=open_set)))
    init_apart = pc.or_kleene(closed_init, pc.and_kleene(pc.is_valid(init), pc.or_kleene(
        pc.is_null(col("init_image_id")), gone("init_image_id"))))
    from_source = pc.coalesce(pc.and_kleene(pc.equal(col("status"), REAL_COPY), init_apart), _FALSE)
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
