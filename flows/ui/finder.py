"""Text search and the upload box: CLIP over stored embeddings (``synthgen search``) and file tracing (``audit FILE``).

The CLIP model loads on the first search or on the first upload that the
cheap ways (credentials, watermark, metadata, pixel hash) cannot match,
and then stays loaded for the app's life.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from catalog import Catalog, CatalogError, DatasetVersion
from catalog.search import search
from flows.trace_file import trace_file
from synthgen.embedder import load_embedder
from synthgen.model_check import check_embedder
from synthgen.spec import EmbedderSpec

SAFE_NAME = 64  # characters of an upload's own name kept in what the page says about it


class Finder:
    """Searches and traces for the app, holding its CLIP model once loaded."""

    def __init__(self, cat: Catalog, embedder: str, allow_restricted: bool = False):
        self.cat, self.allow_restricted = cat, allow_restricted
        self.spec = EmbedderSpec(model=embedder)
        self._embedder = None
        self._lock = threading.Lock()

    def embedder(self):
        """The CLIP model, loaded on first use (checked first, so a bad model is a clear error)."""
        with self._lock:
            if self._embedder is None:
                check_embedder(self.spec, "--embedder")
                self._embedder = load_embedder(self.spec)
            return self._embedder

    def search(self, version: DatasetVersion, text: str, k: int, status: str = "kept") -> list[tuple[str, float]]:
        """The ``k`` rows of ``version`` closest to ``text`` (sample id, cosine), as ``synthgen search`` finds them."""
        emb = self.embedder()
        if version.manifest.embedding_model and version.manifest.embedding_model != emb.name:
            raise CatalogError(f"{version.ref} was embedded with {version.manifest.embedding_model}, not {emb.name}; "
                               "start the app with --embedder set to that model")
        return search(version, emb.embed_texts([text])[0], k, None, status)

    def trace(self, data: bytes, filename: str) -> tuple[str, list[str]]:
        """The sample an uploaded file came from, and how it was matched (one line per step).

        Raises ``ImageReadError`` (not an image) or ``NoMatch`` (``flows.trace_file``).
        """
        name = Path(filename or "upload").name[-SAFE_NAME:] or "upload"
        lines: list[str] = []
        with tempfile.TemporaryDirectory(prefix="synthgen-ui-") as tmp:
            path = Path(tmp) / "upload"
            path.write_bytes(data)
            sample_id = trace_file(self.cat, path, self.embedder, lines.append, label=name,
                                   allow_restricted=self.allow_restricted)
        return sample_id, lines
