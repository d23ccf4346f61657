"""``synthgen release``: lift the restriction of a dataset made from restricted real images, recording who and why."""

from __future__ import annotations

import typer

from flows.cli.common import AUDIT, app, failing_on, open_catalog
from flows.cli.output import say


@app.command(rich_help_panel=AUDIT)
def release(
    ref: str = typer.Argument(..., help="Restricted synthetic NAME or NAME@VERSION (the head)."),
    by: str = typer.Option(..., "--by", help="Who decided (recorded in the new version's manifest)."),
    reason: str = typer.Option(..., help="Why the rows may be read (recorded in the new version's manifest)."),
) -> None:
    """Release a restricted synthetic dataset (rows made from restricted real images): a new, open version
    recording who decided, why, and the real sets its rows came from. Blocked copies stay withheld."""
    from catalog import CatalogError
    from catalog.release import release as run_release

    with failing_on(CatalogError):
        m = run_release(open_catalog(), ref, by, reason)
    say(f"{m.dataset}@{m.version}: {m.message}")
