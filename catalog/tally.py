"""Tallies every reader and writer needs: rows by status, and the distinct runs behind rows."""

from __future__ import annotations

from typing import Iterable, Mapping

import pyarrow as pa

from catalog.manifest import RunRef


def status_counts(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Rows by status summed over ``parts`` (each a status -> rows mapping, e.g. shards' ``rows_by_status``)."""
    counts: dict[str, int] = {}
    for part in parts:
        for status, n in part.items():
            counts[status] = counts.get(status, 0) + n
    return counts


def distinct_runs(rows: pa.Table | Iterable[RunRef]) -> list[RunRef]:
    """The distinct (Prefect, MLflow) runs of ``rows`` (a table with the run columns, or run refs), first seen first."""
    if isinstance(rows, pa.Table):
        rows = (RunRef(prefect_flow_run_id=p, mlflow_run_id=m)
                for p, m in zip(rows["prefect_flow_run_id"].to_pylist(), rows["mlflow_run_id"].to_pylist()))
    seen: dict[tuple, RunRef] = {}
    for r in rows:
        seen.setdefault((r.prefect_flow_run_id, r.mlflow_run_id), r)
    return list(seen.values())
