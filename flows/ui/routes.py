"""The app's pages and byte routes. Every route only reads; every byte route checks access first.

Byte routes (``/image``, ``/thumb``, ``/figure``) answer for one dataset,
named in the URL, and refuse a restricted one unless the app was started
with ``--allow-restricted``; a row's routes also answer a row that copies a
restricted image (blocked by the memorisation guard) as missing, as
``synthgen audit ID`` does. The checks come before any cache is looked at,
so a thumbnail made by an earlier, allowed run is not served either.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from catalog import AuditRecord, open_version
from catalog.access import require_access
from catalog.audit import image_of
from catalog.diff import diff
from flows.ui import gallery, versions
from flows.ui.card import card_html
from flows.ui.index import NUMERIC
from flows.ui.samples import image_record, sample_view
from flows.ui.state import UiState
from flows.trace_file import NoMatch
from flows.ui.upload import UploadError, read_upload
from synthgen.imaging import ImageReadError
from synthgen.records import STATUSES

router = APIRouter()
MAGIC = [(b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"RIFF", "image/webp"), (b"GIF8", "image/gif")]
DIFF_SHOWN = 500  # ids listed per side of a full diff
SEARCH_K = 24


def state(request: Request) -> UiState:
    return request.app.state.ui


def render(request: Request, template: str, code: int = 200, **ctx) -> HTMLResponse:
    """A page from the app's templates (autoescaped)."""
    st = state(request)
    html = st.templates.get_template(template).render(request=request, config=st.config, **ctx)
    return HTMLResponse(html, status_code=code)


def _version(st: UiState, name: str, version: str):
    if not version.isdigit():
        raise HTTPException(404, f"no version {version!r} of {name!r}: versions are numbers")
    return open_version(st.catalog, f"{name}@{int(version)}", st.config.allow_restricted)  # CatalogError -> 404


def _restricted(st: UiState, name: str) -> bool:
    return bool(st.catalog.info(name).get("restricted")) and not st.config.allow_restricted


def _withheld_hint(st: UiState) -> str:
    """What a 404 for a row adds without the flag: the row may be a withheld copy (said of every miss alike)."""
    return "" if st.config.allow_restricted else (" (restricted datasets are not searched, nor blocked copies of "
                                                  "restricted images shown, without --allow-restricted)")


def _image_type(data: bytes) -> str:
    return next((t for magic, t in MAGIC if data.startswith(magic)), "application/octet-stream")


@router.get("/", response_class=HTMLResponse)
def front(request: Request):
    """Datasets and their versions."""
    st = state(request)
    return render(request, "index.html", datasets=versions.overview(st.catalog))


@router.get("/d/{name}")
def head(request: Request, name: str):
    """A dataset's head version."""
    head = state(request).catalog.head(name)
    if head is None:
        raise HTTPException(404, f"dataset {name!r} has no versions yet")
    return RedirectResponse(f"/d/{name}/{head}", status_code=307)


@router.get("/d/{name}/{version}", response_class=HTMLResponse)
def version_page(request: Request, name: str, version: str):
    """A version: its gallery (filtered, sorted, paged), card, figures and changes since its parent."""
    st = state(request)
    v = _version(st, name, version)
    summary = versions.summary(st.catalog, v.manifest)
    ctx = dict(v=v, info=st.catalog.info(name), summary=summary, statuses=STATUSES, numeric=NUMERIC)
    if _restricted(st, name):
        return render(request, "version.html", restricted=True, **ctx)
    q = gallery.GalleryQuery.from_params(request.query_params)
    cur = st.indexes.cursor(v, st.catalog.manifest_sha256(name, v.version))
    try:
        page, groups, withheld = gallery.page(cur, q, st.config.page_size), gallery.groups(cur), gallery.withheld(cur)
    finally:
        cur.close()
    card = card_html(st.catalog.version_dir(name, v.version) / "card.md", f"/figure/{name}/{v.version}")
    return render(request, "version.html", restricted=False, q=q, page=page, groups=groups, withheld=withheld,
                  card=card, link=lambda **change: f"/d/{name}/{v.version}?" + urlencode(q.params(**change)), **ctx)


@router.get("/d/{name}/{version}/diff", response_class=HTMLResponse)
def diff_page(request: Request, name: str, version: str):
    """Every row added and removed since the parent, and the job-spec changes."""
    st = state(request)
    v = _version(st, name, version)
    require_access(st.catalog.info(name), st.config.allow_restricted, "rows")
    parent = v.manifest.parent
    d = diff(st.catalog, f"{name}@{parent}", v.ref) if parent else None
    return render(request, "diff.html", v=v, d=d, shown=DIFF_SHOWN)


@router.get("/sample/{sample_id:path}", response_class=HTMLResponse)
def sample_page(request: Request, sample_id: str, how: str | None = None):
    """A sample: image, every provenance field, the evidence beside it, versions, links."""
    st = state(request)
    view = sample_view(st.catalog, sample_id, st.config.allow_restricted, st.config.mlflow_url, st.config.prefect_url)
    if not view.rows:  # absent, only in restricted datasets, or a withheld copy: answered alike, as audit ID does
        raise HTTPException(404, f"no sample {sample_id!r} in any committed version{_withheld_hint(st)}")
    return render(request, "sample.html", view=view, how=how.splitlines() if how else [])


def _shown_row(st: UiState, name: str, sample_id: str) -> AuditRecord:
    """The row whose image is asked for, if the app may show it: 403 for a restricted dataset, else 404."""
    require_access(st.catalog.info(name), st.config.allow_restricted, "images")  # before anything is read
    rec = image_record(st.catalog, name, sample_id, st.config.allow_restricted)
    if rec is None:  # absent, or a withheld copy of a restricted image: the same answer, so no oracle
        raise HTTPException(404, f"no sample {sample_id!r} in {name!r}{_withheld_hint(st)}")
    return rec


def _row_image(rec: AuditRecord) -> bytes:
    data = image_of(rec)
    if data is None:
        raise HTTPException(404, f"no sample {rec.sample_id!r} in {rec.dataset!r}")
    return data


@router.get("/image/{name}/{sample_id:path}")
def image(request: Request, name: str, sample_id: str):
    """A row's image bytes, as stored."""
    data = _row_image(_shown_row(state(request), name, sample_id))
    return Response(data, media_type=_image_type(data), headers={"Cache-Control": "private, max-age=3600"})


@router.get("/thumb/{name}/{sample_id:path}")
def thumb(request: Request, name: str, sample_id: str):
    """A row's thumbnail (made on the first request, then read from the cache)."""
    st = state(request)
    rec = _shown_row(st, name, sample_id)  # before the cache is looked at: it may hold an allowed app's thumbnails
    data = st.thumbs.get(name, sample_id, lambda: _row_image(rec))
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/figure/{name}/{version}/{path:path}")
def figure(request: Request, name: str, version: str, path: str):
    """A figure the job wrote into the version's folder (grid, quality plot, closest pairs, class grids)."""
    st = state(request)
    v = _version(st, name, version)
    require_access(st.catalog.info(name), st.config.allow_restricted, "figures")
    folder = st.catalog.version_dir(name, v.version)
    if path not in versions.figures(folder):  # only the listed files: no path leaves the folder
        raise HTTPException(404, f"no figure {path!r} in {v.ref}")
    return Response((folder / path).read_bytes(), media_type="image/png")


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = "", ref: str = "", status: str = "kept", k: int = SEARCH_K):
    """Rows of a version closest to a text by CLIP (as ``synthgen search``)."""
    st = state(request)
    refs = [f"{d.name}@{d.versions[0].version}" for d in versions.overview(st.catalog)
            if d.versions and d.info.get("origin") != "real" and not _restricted(st, d.name)]
    hits, v = [], None
    if q.strip():
        v = open_version(st.catalog, ref or (refs[0] if refs else ""), st.config.allow_restricted)
        if status != "all" and status not in STATUSES:
            raise HTTPException(400, f"status {status!r}: use 'all' or one of {', '.join(STATUSES)}")
        hits = st.finder.search(v, q, max(1, min(k, 200)), status)
    return render(request, "search.html", q=q, ref=ref or (v.ref if v else ""), refs=refs, hits=hits, v=v,
                  status=status, statuses=STATUSES)


@router.get("/audit", response_class=HTMLResponse)
def audit_form(request: Request):
    """The upload box."""
    return render(request, "audit.html", error=None)


@router.post("/audit")
async def audit_upload(request: Request):
    """Trace an uploaded image file to its sample (as ``synthgen audit FILE``) and go to that sample's page."""
    st = state(request)
    if int(request.headers.get("content-length") or 0) > st.config.max_upload_bytes:
        return render(request, "audit.html", 413, error=f"the file is over {st.config.max_upload_bytes >> 20} MB")
    body = await request.body()
    try:
        filename, data = read_upload(body, request.headers.get("content-type", ""))
        sample_id, lines = await run_in_threadpool(st.finder.trace, data, filename)
    except (UploadError, ImageReadError) as exc:
        return render(request, "audit.html", 400, error=str(exc))
    except NoMatch as exc:
        return render(request, "audit.html", 404, error=str(exc))
    return RedirectResponse(f"/sample/{quote(sample_id, safe='')}?" + urlencode({"how": "\n".join(lines)}),
                            status_code=303)
