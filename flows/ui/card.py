"""A version's card (the ``card.md`` the job wrote) as HTML, with its figures pointed at the figure route.

Raw HTML in the Markdown is not passed through (markdown-it with ``html``
off escapes it): a prompt or a description is data, never markup.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from markdown_it import MarkdownIt


def card_html(card: Path, figure_base: str) -> str | None:
    """``card``'s Markdown as HTML (None when the version has no card); image paths resolved under ``figure_base``."""
    if not card.is_file():
        return None
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(card.read_text(encoding="utf-8", errors="replace"))
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if src and "://" not in src and not src.startswith("/"):
                child.attrSet("src", f"{figure_base}/{quote(src)}")
    return md.renderer.render(tokens, md.options, {})
