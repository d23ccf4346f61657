"""Who may read a restricted dataset's rows: only callers that say so.

A dataset ingested with ``restricted=True`` (e.g. licensed real images) may
be used *inside* the catalog (the memorisation guard's thumbnails, dedup's
stored embeddings, integrity checks) but its rows and images leave it only
through readers called with ``allow_restricted=True``. Every reader in the
catalog layer (versions, loaders, remote and DVC reads, query, mix, export,
push) calls ``require_access`` so no command has to remember to.
"""

from __future__ import annotations

from catalog.store import CatalogError


class RestrictedError(CatalogError):
    """A restricted dataset's rows were asked for without ``allow_restricted``."""


def require_access(info: dict, allow_restricted: bool, what: str = "rows") -> None:
    """Raise ``RestrictedError`` when ``info`` (a dataset.json) is restricted and the caller did not allow it."""
    if info.get("restricted") and not allow_restricted:
        raise RestrictedError(
            f"{info.get('name', 'this dataset')} is restricted: reading its {what} needs allow_restricted=True "
            "(--allow-restricted on the command line)"
        )
