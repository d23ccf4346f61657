"""The web app: FastAPI with Jinja2 pages, its parts built once, errors as pages (never a traceback).

FastAPI, Starlette, Jinja2 and uvicorn come with Prefect and MLflow, so the
app adds no dependency; pages are rendered on the server (a little inline
script at most), so there is no JavaScript build.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException

from catalog import Catalog, CatalogError, RestrictedError
from flows.ui.config import UiConfig
from flows.ui.finder import Finder
from flows.ui.index import Indexes, warm
from flows.ui.routes import render, router
from flows.ui.state import UiState
from flows.ui.thumbs import Thumbnails

TEMPLATES = Path(__file__).resolve().parent / "templates"
log = logging.getLogger("synthgen.ui")


def templates() -> Environment:
    """The pages' templates; every value is HTML-escaped unless a template says otherwise."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda v, digits=4: "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else v
    return env


def _log_failures(failed: list[str]) -> None:
    for line in failed:
        log.warning("gallery index not built ahead (the first visit builds it): %s", line)


def create_app(config: UiConfig) -> FastAPI:
    """The app over ``config.catalog``; nothing it serves writes to the catalog."""
    cat = Catalog(config.catalog, create=False, cache=config.shard_cache)
    indexes = Indexes(config.cache / "index")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.warm_indexes:  # heads' gallery indexes built behind the first requests, not by them
            threading.Thread(target=lambda: _log_failures(warm(cat, indexes, config.allow_restricted)),
                             name="synthgen-ui-warm", daemon=True).start()
        yield
        indexes.close()

    app = FastAPI(title="synthgen", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ui = UiState(config, cat, indexes, Thumbnails(config.cache / "thumbs", config.thumb_px),
                           Finder(cat, config.embedder, config.allow_restricted), templates())
    app.include_router(router)

    @app.middleware("http")
    async def server_timing(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        # The handler's own time (what bench/bench_ui.py reports), for any client to read.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.2f}"
        return response

    @app.exception_handler(RestrictedError)
    async def restricted(request: Request, exc: RestrictedError):
        return render(request, "error.html", 403, title="Restricted", message=str(exc), restricted=True)

    @app.exception_handler(CatalogError)
    async def unknown(request: Request, exc: CatalogError):
        return render(request, "error.html", 404, title="Not found", message=str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        title = "Not found" if exc.status_code == 404 else f"Error {exc.status_code}"
        return render(request, "error.html", exc.status_code, title=title, message=str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return render(request, "error.html", 400, title="Bad request", message=message)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("error serving %s", request.url.path)  # the traceback goes to the server's log only
        return render(request, "error.html", 500, title="Internal error",
                      message=f"{type(exc).__name__}: {exc}")

    return app
