"""Ingest a folder of real images as a ``real`` dataset version.

The class comes from the sub-folder name (``root/<class>/<file>``), like
torchvision's ``ImageFolder``; files in folders below a class folder belong to
that class, and symlinks are followed. Class ids follow ``root/classes.txt`` (one
name per line) when present, else sorted folder names. Files are stored
byte for byte; the pixel hash and (optionally) a CLIP embedding are added so
synthetic samples can be checked against these rows.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from catalog.manifest import Manifest
from catalog.schema import samples_to_table
from catalog.store import Catalog
from catalog.version import DatasetVersion
from synthgen.imaging import ImageReadError, pixel_sha256, read_image_file
from synthgen.records import KEPT, Sample

EmbedFn = Callable[[list[Image.Image]], np.ndarray]


class IngestError(ValueError):
    """The folder cannot be ingested as it is."""


def class_names(root: Path) -> list[str]:
    """The class names in id order: ``classes.txt``'s lines when present, else the sorted class folders.

    A ``classes.txt`` must list every class folder: one it leaves out would be dropped without a word.
    """
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    listed = root / "classes.txt"
    if not listed.is_file():
        return folders
    try:
        names = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise IngestError(f"{listed}: not a text file (one class name per line)") from None
    bad = [n for n in names if n in (".", "..") or "/" in n or "\\" in n]
    if bad:
        raise IngestError(f"{listed}: class names must be sub-folder names, not paths: {bad}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise IngestError(f"{listed}: class names listed twice: {dupes}")
    unlisted = [f for f in folders if f not in names]
    if unlisted:
        raise IngestError(f"{listed} does not list the class folder(s) {unlisted}: add them to it, "
                          "or move them out of the folder")
    return names


def class_files(folder: Path) -> list[Path]:
    """Every file under a class folder, sub-folders included (as torchvision's ``ImageFolder`` does).

    Symlinks are followed, to files and folders alike, wherever they point: image folders are often
    built from links into a shared store, and the bytes stored are the target's. A dangling link is
    kept, so ingest names it as a bad file instead of leaving it out. Hidden entries (``.DS_Store``,
    ``.git``) are not data; a folder reached twice through links is walked once.
    """
    found: list[Path] = []
    seen: set[str] = set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree: walking it again would never end
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".")]
    return sorted(found)


def scan(root: Path) -> list[tuple[Path, str, int]]:
    """(file, class name, class id) for every file in a class folder, in a stable order.

    Every file counts except hidden ones (``.DS_Store``, ``.git``): one that
    is not an image is named by ``ingest_folder`` rather than silently left out.
    A class folder without any file is an error too: its class id would name no row.
    """
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    names = class_names(root)
    if not names:
        raise IngestError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    found, empty = [], []
    for cid, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise IngestError(f"{root}/classes.txt lists {name!r} but {folder} is missing")
        files = class_files(folder)
        found += [(f, name, cid) for f in files]
        if not files:
            empty.append(name)
    if not found:
        raise IngestError(f"{root}: no images found in its class folders ({', '.join(names[:10])})")
    if empty:
        raise IngestError(f"{root}: class folder(s) with no files: {empty}; add images to them or remove them"
                          + (" (and their lines in classes.txt)" if (root / "classes.txt").is_file() else ""))
    return found


def check_target(catalog: Catalog, name: str) -> None:
    """Fail unless ``name`` is a valid dataset name that is free or already a real dataset."""
    if catalog.exists(name) and catalog.info(name)["origin"] != "real":
        raise IngestError(f"--name {name}: dataset {name!r} holds {catalog.info(name)['origin']} data; "
                          "ingest real images under another name")


def _describe_bad(root: Path, bad: list[tuple[Path, str]], ok: int) -> str:
    shown = "\n".join(f"  - {reason}" for _, reason in bad[:50])
    more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
    fix = f"fix or remove them, or pass --skip-bad to ingest the other {ok}" if ok else "no file is a readable image"
    return (f"{root}: {len(bad)} of {len(bad) + ok} files are not readable images; nothing was written:\n"
            f"{shown}{more}\n{fix}")


def ingest_folder(
    catalog: Catalog,
    name: str,
    root: str | Path,
    embed: EmbedFn | None = None,
    embedding_model: str | Callable[[], str] | None = None,
    restricted: bool = False,
    description: str = "",
    batch: int = 512,
    skip_bad: bool = False,
) -> Manifest:
    """Add every image under ``root`` to the real dataset ``name`` as a new version.

    Every file is decoded first: if any is not a readable image, nothing is
    written and ``IngestError`` names each bad file, unless ``skip_bad``,
    which leaves them out and lists them in the manifest's ``prov["skipped"]``.
    ``embedding_model`` may be a function, called once the files are read (after ``embed``), so a
    caller can load its model only once the folder is known to be good.
    """

    root = Path(root)
    check_target(catalog, name)
    files = scan(root)  # validate before touching the catalog
    now = datetime.now(timezone.utc)
    samples: list[Sample] = []
    bad: list[tuple[Path, str]] = []
    for path, cname, cid in files:  # every file decoded before anything is written
        if path.is_symlink() and not path.exists():
            bad.append((path, f"{path}: dangling symlink (to {os.readlink(path)})"))
            continue
        try:
            data, img = read_image_file(path)
        except ImageReadError as exc:
            bad.append((path, str(exc)))  # "<file>: <why>"
            continue
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
    if bad and (not skip_bad or not samples):
        raise IngestError(_describe_bad(root, bad, len(samples)))
    if embed is not None:
        for start in range(0, len(samples), batch):
            chunk = samples[start : start + batch]
            emb = embed([s.image for s in chunk])
            for s, e in zip(chunk, emb):
                s.embedding, s.image = e, None
    if callable(embedding_model):
        embedding_model = embedding_model()
    catalog.create(name, "real", description=description, restricted=restricted)
    with catalog.lock(name):
        shard = catalog.write_shard(name, samples_to_table(samples, embedding_model=embedding_model))
        manifest = catalog.commit(
            name,
            [shard],
            keep_parent_shards=False,
            embedding_model=embedding_model,
            message=f"ingest {len(samples)} images from {root}",
            prov={"wasGeneratedBy": {"activity": "ingest", "used": str(root.resolve())},
                  **({"skipped": [{"file": str(p.relative_to(root)), "reason": r.removeprefix(f"{p}: ")}
                                 for p, r in bad]} if bad else {})},
        )
    # The pixel guard's thumbnails and index, once per version here rather than decoded again by every job.
    from catalog.guard import pixel_guard  # faiss and torch: imported here, so a bad folder is named fast
    pixel_guard(DatasetVersion(catalog, manifest))
    return manifest
