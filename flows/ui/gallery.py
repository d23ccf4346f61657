"""One page of a version's gallery: filters and a sort order turned into one keyset query over its index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field

from flows.ui.index import NUMERIC, SORTS

SHOWN = ["rank", "sample_id", "origin", "status", "label_name", "prompt", "nn_similarity", "real_nn_similarity",
         "clip_score"]


class GalleryQuery(BaseModel):
    """What a gallery URL asks for. Column names come from fixed lists; values are bound, never pasted."""

    model_config = ConfigDict(frozen=True)

    status: str | None = None
    group: str | None = None  # a class name, or a prompt, exactly
    prompt: str | None = None  # a substring of the prompt, any case
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)  # NUMERIC column -> (min, max)
    sort: Literal["plan", "nn", "real"] = "plan"
    after: int | None = None  # the rank of the last row of the page before
    before: int | None = None  # the rank of the first row of the page after

    @classmethod
    def from_params(cls, params) -> "GalleryQuery":
        """From a request's query parameters (``min_<column>``/``max_<column>`` for ranges); bad numbers are ignored."""
        def num(key: str, cast=float):
            try:
                return cast(params[key]) if params.get(key) not in (None, "") else None
            except ValueError:
                return None

        ranges = {c: (num(f"min_{c}"), num(f"max_{c}")) for c in NUMERIC}
        sort = params.get("sort") if params.get("sort") in SORTS else "plan"
        return cls(status=params.get("status") or None, group=params.get("group") or None,
                   prompt=params.get("prompt") or None, sort=sort, after=num("after", int), before=num("before", int),
                   ranges={c: r for c, r in ranges.items() if r != (None, None)})

    def params(self, **change) -> dict[str, str]:
        """The query parameters of this query with ``change`` applied (for links to other pages and sorts)."""
        q = self.model_copy(update=change)
        out = {"status": q.status, "group": q.group, "prompt": q.prompt, "sort": q.sort if q.sort != "plan" else None,
               "after": q.after, "before": q.before}
        for col, (lo, hi) in q.ranges.items():
            out[f"min_{col}"], out[f"max_{col}"] = lo, hi
        return {k: str(v) for k, v in out.items() if v is not None}


@dataclass
class Page:
    """The rows of one page and the keys of its neighbours (None: no such page)."""

    rows: list[dict]
    next_after: int | None
    prev_before: int | None


def _where(q: GalleryQuery) -> tuple[list[str], list]:
    clauses, args = [], []
    if q.status:
        clauses.append("status = ?")
        args.append(q.status)
    if q.group:
        clauses.append("coalesce(label_name, prompt) = ?")
        args.append(q.group)
    if q.prompt:
        clauses.append("prompt ILIKE ? ESCAPE '\\'")
        args.append("%" + q.prompt.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    for col, (lo, hi) in q.ranges.items():
        if col not in NUMERIC:
            continue
        if lo is not None:
            clauses.append(f"{col} >= ?")
            args.append(lo)
        if hi is not None:
            clauses.append(f"{col} <= ?")
            args.append(hi)
    return clauses, args


def page(cur: duckdb.DuckDBPyConnection, q: GalleryQuery, size: int) -> Page:
    """The page of ``size`` rows that ``q`` names, read from an index cursor (``flows.ui.index``)."""
    clauses, args = _where(q)
    backwards = q.before is not None and q.after is None
    if backwards:
        clauses.append("rank < ?")
        args.append(q.before)
    else:  # also on the first page: a bound on rank lets DuckDB stop at the first full page (2 ms, not 6, at 10^6)
        clauses.append("rank > ?")
        args.append(q.after or 0)
    where = " AND ".join(clauses) or "TRUE"
    sql = (f"SELECT {', '.join(SHOWN)} FROM t_{q.sort} WHERE {where} "
           f"ORDER BY rank {'DESC' if backwards else ''} LIMIT {size + 1}")
    res = cur.execute(sql, args)
    cols = [d[0] for d in res.description]
    rows = [dict(zip(cols, r)) for r in res.fetchall()]
    more, rows = len(rows) > size, rows[:size]
    if backwards:
        rows.reverse()
        return Page(rows, rows[-1]["rank"] if rows else None, rows[0]["rank"] if more and rows else None)
    return Page(rows, rows[-1]["rank"] if more else None, rows[0]["rank"] if q.after is not None and rows else None)


def groups(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """The classes or prompts of the version, most rows first (what the group filter offers)."""
    return [(n, c) for n, c in cur.execute("SELECT name, rows FROM facets ORDER BY rows DESC, name").fetchall()]


def withheld(cur: duckdb.DuckDBPyConnection) -> int:
    """How many rows of the version the index leaves out: blocked copies of restricted images, without the flag."""
    return cur.execute("SELECT rows FROM withheld").fetchone()[0]
