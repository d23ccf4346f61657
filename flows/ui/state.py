"""What every request handler is handed: the catalog, the config and the app's caches (one per app)."""

from __future__ import annotations

from dataclasses import dataclass

from jinja2 import Environment

from catalog import Catalog
from flows.ui.config import UiConfig
from flows.ui.finder import Finder
from flows.ui.index import Indexes
from flows.ui.thumbs import Thumbnails


@dataclass
class UiState:
    """The app's parts, built once by ``create_app`` and kept on ``app.state.ui``."""

    config: UiConfig
    catalog: Catalog
    indexes: Indexes
    thumbs: Thumbnails
    finder: Finder
    templates: Environment
