"""Ingest a folder of real images as a ``real`` dataset version.

The class comes from the sub-folder name (``root/<class>/<file>``), like
torchvision's ``ImageFolder``. Class ids follow ``root/classes.txt`` (one
name per line) when present, else sorted folder names. Files are stored
byte for byte; the pixel hash and (optionally) a CLIP embedding are added so
synthetic samples can be checked against these rows.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from catalog.guard import pixel_guard
from catalog.manifest import Manifest
from catalog.schema import samples_to_table
from catalog.store import Catalog
from catalog.version import DatasetVersion
from synthgen.imaging import decode, pixel_sha256
from synthgen.records import KEPT, Sample

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
EmbedFn = Callable[[list[Image.Image]], np.ndarray]


class IngestError(ValueError):
    """The folder cannot be ingested as it is."""


def class_names(root: Path) -> list[str]:
    listed = root / "classes.txt"
    if listed.is_file():
        return [line.strip() for line in listed.read_text().splitlines() if line.strip()]
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan(root: Path) -> list[tuple[Path, str, int]]:
    """(file, class name, class id) for every image, in a stable order."""
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    names = class_names(root)
    if not names:
        raise IngestError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    ids = {n: i for i, n in enumerate(names)}
    found = []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            raise IngestError(f"{root}/classes.txt lists {name!r} but {folder} is missing")
        for f in sorted(folder.rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                found.append((f, name, ids[name]))
    if not found:
        raise IngestError(f"{root}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def ingest_folder(
    catalog: Catalog,
    name: str,
    root: str | Path,
    embed: EmbedFn | None = None,
    embedding_model: str | None = None,
    restricted: bool = False,
    description: str = "",
    batch: int = 512,
) -> Manifest:
    """Add every image under ``root`` to the real dataset ``name`` as a new version."""
    root = Path(root)
    files = scan(root)  # validate before touching the catalog
    catalog.create(name, "real", description=description, restricted=restricted)
    now = datetime.now(timezone.utc)
    samples: list[Sample] = []
    for path, cname, cid in files:
        data = path.read_bytes()
        img = decode(data)
        rel = path.relative_to(root).as_posix()
        sha = pixel_sha256(img)
        samples.append(
            Sample(
                sample_id="real-" + hashlib.sha256(f"{rel}|{sha}".encode()).hexdigest()[:20],
                origin="real",
                class_id=cid,
                class_name=cname,
                source_path=rel,
                png=data,
                image_sha256=sha,
                width=img.width,
                height=img.height,
                created_at=now,
                status=KEPT,
                image=img if embed else None,
            )
        )
    if embed is not None:
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            emb = embed([s.image for s in chunk])
            for s, e in zip(chunk, emb):
                s.embedding, s.image = e, None
    with catalog.lock(name):
        shard = catalog.write_shard(name, samples_to_table(samples, embedding_model=embedding_model))
        manifest = catalog.commit(
            name,
            [shard],
            keep_parent_shards=False,
            embedding_model=embedding_model,
            message=f"ingest {len(samples)} images from {root}",
            prov={"wasGeneratedBy": {"activity": "ingest", "used": str(root.resolve())}},
        )
    # The pixel guard's thumbnails and index, once per version here rather than decoded again by every job.
    pixel_guard(DatasetVersion(catalog, manifest))
    return manifest
