"""``synthgen ui``: browse and audit the catalog in a web browser (read-only, loopback by default)."""

from __future__ import annotations

import typer

from flows.cli.common import INSPECT, cli_paths, app, err
from flows.cli.errors import Terminated
from flows.ui.config import DEFAULT_HOST, DEFAULT_PORT, UiConfig


@app.command(rich_help_panel=INSPECT)
def ui(
    host: str = typer.Option(DEFAULT_HOST, help="Address to listen on (loopback by default: the app shows images)."),
    port: int = typer.Option(DEFAULT_PORT, min=0, max=65535, help="Port to listen on."),
    allow_restricted: bool = typer.Option(False, help="Also show rows and images of restricted datasets."),
    embedder: str = typer.Option("embedded:digits-clip", help="CLIP model for text search and tracing uploads."),
) -> None:
    """A read-only web app over the catalog: versions, galleries, samples with their evidence, search, upload audit."""
    # Imported here, as every command's heavy modules are: `synthgen --help` stays instant.
    import uvicorn

    from flows.settings import Settings
    from flows.ui.app import create_app

    paths, settings = cli_paths(), Settings()
    config = UiConfig(catalog=paths.catalog, cache=paths.ui_cache, shard_cache=paths.cache,
                      allow_restricted=allow_restricted, mlflow_url=settings.mlflow_ui_url,
                      prefect_url=settings.prefect_ui_url, embedder=embedder)
    web_app = create_app(config)  # a catalog it cannot read (a missing bucket) is an error before the banner
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] listening on {host}: anyone who can reach it sees the catalog's images")
    err.print(f"synthgen ui: http://{'[' + host + ']' if ':' in host else host}:{port}/ "
              f"(catalog {paths.catalog}{'; restricted datasets shown' if allow_restricted else ''}; Ctrl-C stops it)")
    try:
        uvicorn.run(web_app, host=host, port=port, log_level="warning", access_log=False)
    except (KeyboardInterrupt, Terminated):  # uvicorn shut down cleanly, then re-raised the signal: how a server stops
        err.print("synthgen ui: stopped")
