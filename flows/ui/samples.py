"""A sample's page: its rows (every provenance field), the evidence that decided each, links out.

Rows are found with ``catalog.audit`` (the id index: one row group per
lookup, so a sample page costs the same at 10^7 rows). A dropped or blocked
row names the row it was compared with (``nn_id``, ``real_nn_id``,
``real_pixel_nn_id``) and stores the similarity and the threshold that
applied: the page shows that row's image beside it, through the same
guarded image route as any other, so a restricted real match shows as
"restricted", not as pixels.

Without ``--allow-restricted``, rows are found as ``synthgen audit ID``
finds them: a synthetic row that the guard blocked as a copy of a
restricted real image is withheld like that image, answered as an id the
catalog lacks (``catalog.access.copies_of_restricted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from catalog import AuditRecord, Catalog, RestrictedError, RunRef, audit
from synthgen.records import DUPLICATE, NN_REAL, REAL_COPY

SOURCE_PREFIX = "source_"  # columns naming what a real-guided sample started from (e.g. source_path, source_sample_id)


@dataclass
class Evidence:
    """One comparison stored on a row: with which row, how close, against which threshold."""

    title: str
    sample_id: str
    dataset: str
    measure: str  # "cosine" (higher = closer) or "pixel distance" (lower = closer)
    value: float | None
    threshold: float | None
    decided: bool  # this comparison is why the row is not kept
    restricted: bool = False  # the matched row's dataset is restricted and the app may not show it


@dataclass
class RowView:
    """One row of the sample and everything shown beside it."""

    record: AuditRecord
    evidence: list[Evidence] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (label, url)
    source: dict = field(default_factory=dict)


@dataclass
class SampleView:
    """The sample page: the rows of it the app may show."""

    sample_id: str
    rows: list[RowView]


def _is_restricted(cat: Catalog, dataset: str | None, allow: bool) -> bool:
    if allow or not dataset or not cat.exists(dataset):
        return False
    return bool(cat.info(dataset).get("restricted"))


def _job_dedup(cat: Catalog, rec: AuditRecord) -> dict:
    """The dedup section of the job that made the row's version (thresholds a row may not carry itself)."""
    if not rec.versions:
        return {}
    job = cat.manifest(rec.dataset, max(rec.versions)).job or {}
    return job.get("dedup") or {}


def evidence(cat: Catalog, rec: AuditRecord, allow: bool) -> list[Evidence]:
    """The comparisons stored on ``rec``'s row, the deciding one first.

    A threshold or real dataset the row does not carry is taken from its version's job spec.
    """
    r, out = rec.row, []
    spec = _job_dedup(cat, rec) if rec.row.get("origin") == "synthetic" else {}
    real = r.get("real_dataset") or spec.get("real_dataset")
    real_t, pixel_t = r.get("real_threshold") or spec.get("real_threshold"), r.get("pixel_threshold") or spec.get("pixel_threshold")
    # With nn_source "real" the nearest neighbour is the CLIP real match shown below: not twice.
    if r.get("nn_id") and not (r.get("nn_source") == NN_REAL and r.get("nn_id") == r.get("real_nn_id")):
        where = real if r.get("nn_source") == NN_REAL else rec.dataset
        threshold = real_t if r.get("nn_source") == NN_REAL else r.get("dedup_threshold") or spec.get("threshold")
        out.append(Evidence(f"nearest neighbour ({r.get('nn_source') or '?'})", r["nn_id"], where or "",
                            "cosine", r.get("nn_similarity"), threshold, r.get("status") == DUPLICATE))
    if r.get("real_nn_id"):
        out.append(Evidence("closest real image (CLIP)", r["real_nn_id"], real or "", "cosine",
                            r.get("real_nn_similarity"), real_t,
                            r.get("status") == REAL_COPY and _over(r.get("real_nn_similarity"), real_t)))
    if r.get("real_pixel_nn_id"):
        out.append(Evidence("closest real image (pixels)", r["real_pixel_nn_id"], real or "", "pixel distance",
                            r.get("real_pixel_distance"), pixel_t,
                            r.get("status") == REAL_COPY and _under(r.get("real_pixel_distance"), pixel_t)))
    if r.get("init_image_id"):  # real-image guidance: the real image it started from, and how far it moved
        out.append(Evidence("init image it started from", r["init_image_id"], r.get("init_dataset") or "",
                            "pixel distance", r.get("init_distance"), pixel_t,
                            r.get("status") == REAL_COPY and _under(r.get("init_distance"), pixel_t)))
    for e in out:
        e.restricted = _is_restricted(cat, e.dataset, allow)
    return sorted(out, key=lambda e: not e.decided)


def _over(value, threshold) -> bool:
    return value is not None and threshold is not None and value >= threshold


def _under(value, threshold) -> bool:
    return value is not None and threshold is not None and value <= threshold


def links(row: dict, runs: list[RunRef], mlflow_url: str | None, prefect_url: str | None) -> list[tuple[str, str]]:
    """Links to the row's MLflow run and Prefect flow run, where those UIs are configured.

    The row's own run ids, else those of the version that added it (``runs``).
    """
    mlflow_ids = [row["mlflow_run_id"]] if row.get("mlflow_run_id") else [r.mlflow_run_id for r in runs if r.mlflow_run_id]
    prefect_ids = ([row["prefect_flow_run_id"]] if row.get("prefect_flow_run_id")
                   else [r.prefect_flow_run_id for r in runs if r.prefect_flow_run_id])
    out = []
    if mlflow_url:
        out += [(f"MLflow run {i}", f"{mlflow_url.rstrip('/')}/#/runs/{quote(i, safe='')}") for i in mlflow_ids]
    if prefect_url:
        out += [(f"Prefect flow run {i}", f"{prefect_url.rstrip('/')}/runs/flow-run/{quote(i, safe='')}")
                for i in prefect_ids]
    return out


def _added_by(cat: Catalog, rec: AuditRecord) -> list[RunRef]:
    """The runs of the first version that held the row (the one that added it)."""
    return cat.manifest(rec.dataset, min(rec.versions)).runs if rec.versions else []


def sample_view(cat: Catalog, sample_id: str, allow: bool, mlflow_url: str | None = None,
                prefect_url: str | None = None) -> SampleView:
    """What the sample page shows: its rows, less those of restricted datasets and, without ``allow``,
    less blocked copies of restricted images. An id the app may show no row of has no rows, whether a
    restricted dataset holds it or not: answered as ``synthgen audit ID`` answers it, so no oracle."""
    try:
        records = audit(cat, sample_id, allow)
    except RestrictedError:
        records = []
    rows = []
    for rec in records:
        source = {k: v for k, v in rec.row.items()
                  if k.startswith(SOURCE_PREFIX) and v is not None and rec.row.get("origin") == "synthetic"}
        rows.append(RowView(rec, evidence(cat, rec, allow), links(rec.row, _added_by(cat, rec), mlflow_url, prefect_url), source))
    return SampleView(sample_id, rows)


def image_record(cat: Catalog, dataset: str, sample_id: str, allow: bool) -> AuditRecord | None:
    """The row of ``sample_id`` in ``dataset`` if the app may show it, else None (the caller has checked
    that it may show that dataset): without ``allow``, a blocked copy of a restricted image is None."""
    try:
        found = audit(cat, sample_id, allow)
    except RestrictedError:
        return None  # in no dataset the app may read, or withheld: answered alike, as audit answers them
    return next((rec for rec in found if rec.dataset == dataset), None)
