"""Model folders: the embedded ones, folders on object storage copied once into a local cache, and their hash.

A model is named by ``embedded:NAME`` (shipped in the package), a local
folder, a hub id, or a URL of a folder on object storage
(``s3://bucket/models/sd-turbo``, any fsspec store). A URL's folder is
copied once into this machine's model cache (``$SYNTHGEN_MODEL_CACHE``, else
``$XDG_CACHE_HOME/synthgen/models``), one folder per URL, and its weights
hash is recorded beside it when it arrives; every later use hashes the copy
again and fetches it anew when it no longer matches (a damaged or edited
copy is never loaded). Rows record the hash as for any model, so a model
replaced at the same URL shows in the rows; give each model version its own
prefix to keep runs comparable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import fsspec

ASSETS = Path(__file__).parent / "assets"
EMBEDDED = {
    "embedded:digits": ASSETS / "digits-ddpm",
    "embedded:digits-clip": ASSETS / "digits-clip",
}
CACHE_ENV = "SYNTHGEN_MODEL_CACHE"
HASH_FILE = ".synthgen-weights.sha256"  # a dot file: not part of the hash it records


def weights_sha256(folder: str | Path) -> str:
    """One sha256 over every weight and config file of a model folder.

    Covers file names and contents, so a changed weight, a swapped component
    or a changed config all change the hash.
    """
    folder = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.suffix not in {".safetensors", ".bin", ".json", ".txt", ".model"} or rel.startswith("."):
            continue
        h.update(rel.encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def is_model_url(model: str) -> bool:
    """Whether ``model`` names a folder on another filesystem (``s3://...``), not a local path or hub id."""
    return "://" in model and fsspec.utils.get_protocol(model) not in ("file", "local")


def model_cache() -> Path:
    """This machine's cache of model folders fetched from URLs."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthgen" / "models"


def fetch_model(url: str, cache: Path | None = None) -> Path:
    """The model folder at ``url`` as a local folder: copied once, checked against its recorded hash each use.

    ``FileNotFoundError`` when no folder is there. Safe when several processes fetch at once: each copies
    into a temporary folder and the first rename wins.
    """
    cache = Path(cache) if cache is not None else model_cache()
    dest = cache / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    recorded = dest / HASH_FILE
    if recorded.is_file():
        if weights_sha256(dest) == recorded.read_text().strip():
            return dest
        shutil.rmtree(dest, ignore_errors=True)  # changed or damaged since it arrived: fetched again
    fs, root = fsspec.url_to_fs(url)
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise FileNotFoundError(f"{url}: no model folder there")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        for src in fs.find(root):
            rel = src[len(root) + 1:]
            target = (tmp / rel).resolve()
            if not rel or rel.endswith("/") or not target.is_relative_to(tmp.resolve()):
                raise ValueError(f"{url}: object key {src!r} leads out of the model folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(src, str(target))
        (tmp / HASH_FILE).write_text(weights_sha256(tmp) + "\n")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process renamed its copy first: use that one
            if not (dest / HASH_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def resolve_model_path(model: str) -> str:
    """Map 'embedded:*' names to the shipped folders and URLs to their local copies; other names pass through."""
    if model.startswith("embedded:"):
        if model not in EMBEDDED:
            raise ValueError(f"unknown embedded model {model!r}; known: {sorted(EMBEDDED)}")
        return str(EMBEDDED[model])
    if is_model_url(model):
        return str(fetch_model(model))
    return model
