"""Ingest a folder or bucket of real images as a ``real`` dataset version: streaming, parallel, resumable.

The layout is ``root/<class>/<image>`` with an optional ``root/classes.txt`` (``catalog.ingest_source``).
Files are stored byte for byte; the pixel hash, a CLIP embedding (optional) and the pixel guard's
thumbnail are added so synthetic samples can be checked against these rows.

1. List the source and plan fixed shards over the file list (``catalog.ingest_stage``).
2. For each shard not staged by an earlier run: decode its files on worker threads
   (``catalog.ingest_decode``), embed them in batches on the embedder's device, write its rows
   to a staged Parquet file as row groups fill, and record it. Memory holds one batch and one row
   group, whatever the set's size.
3. Publish one version (the staged shards moved in, then the manifest, then HEAD), then store the
   pixel guard from the staged thumbnails.

Bad files are found per shard, and nothing is published until every file has been read: without
``skip_bad``, the first bad file turns the rest of the run into a check (decode only: no embedding,
no writing) so that every bad file is named at once, and the ingest fails with nothing committed. The
shards finished so far stay staged, so a rerun with ``skip_bad`` reuses them. (Rather than a first
pass that decodes everything twice: decoding is most of the CPU time, and a bucket would be
downloaded twice.)
"""

from __future__ import annotations

import hashlib
import tempfile
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from catalog.guard import pixel_guard, store_guard
from catalog.ingest_decode import Decoded, EmbedSteps, PixelBudget, decode_file, nbytes, ordered_map
from catalog.ingest_source import IngestError, LocalSource, Source, SourceFile, UrlSource, open_source
from catalog.ingest_stage import Stage, StagedShard, ingest_key, plan_shards, staged_in_order
from catalog.manifest import Manifest, ShardRef
from catalog.schema import samples_to_table
from catalog.store import Catalog
from catalog.version import DatasetVersion
from synthgen.failpoints import failpoint
from synthgen.parallel import machine_cores
from synthgen.records import KEPT, Sample

__all__ = ["IngestError", "IngestProgress", "check_target", "ingest_folder", "shown"]

EmbedFn = Callable[[list[Image.Image]], np.ndarray]
SHARD_ROWS = 100_000  # at most this many images per shard ...
SHARD_BYTES = 1 << 30  # ... or this many bytes of image files: few large files, as object stores and DVC like
EMBED_BYTES = 96 << 20  # an embedding batch also closes once its prepared images hold this much memory
_CONTROL = ("Cc", "Cf", "Zl", "Zp")  # the characters synthgen.path_names refuses in a file name: not shown raw
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


@dataclass
class IngestProgress:
    """Where an ingest stands, passed to the ``progress`` callback after each batch and each reused shard."""

    files: int  # in the source
    done: int = 0  # files read (or found in reused shards)
    images: int = 0  # of which readable images
    bad: int = 0
    source_bytes: int = 0  # bytes of the files read
    reused_shards: int = 0
    shards: int = 0
    started: float = field(default_factory=time.monotonic)
    checking: bool = False  # a bad file was found: the rest is only checked
    already_committed: bool = False  # the head is this very ingest (a rerun after a kill past the commit)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def check_target(catalog: Catalog, name: str, restricted: bool = False) -> None:
    """Fail unless ``name`` is a valid dataset name that is free, or a real dataset as ``restricted`` as asked.

    Restricted is decided when a dataset is created; checked here, before any file is read, rather than
    at the commit after every file was decoded and embedded (or not at all, for a rerun of the same files).
    """
    if not catalog.exists(name):
        return
    info = catalog.info(name)
    if info["origin"] != "real":
        raise IngestError(f"--name {name}: dataset {name!r} holds {info['origin']} data; "
                          "ingest real images under another name")
    if restricted and not info.get("restricted"):
        raise IngestError(f"--name {name}: dataset {name!r} exists and is not restricted, so everyone may read "
                          "it; restricted images cannot be added to it (restricted is decided when a dataset is "
                          "created): ingest them under a new name")
    if not restricted and info.get("restricted"):
        raise IngestError(f"--name {name}: dataset {name!r} is restricted; pass --restricted to add images to it "
                          "(they will be restricted too), or ingest them under another name")


def shown(text: str) -> str:
    """``text`` for one line of a message or listing, with line breaks, tabs and other control characters
    escaped (``\\n``, ``\\t``, ``\\x1b``...): a file named ``a\\n  - b.png: ok`` cannot forge lines of a list
    of bad files, nor an escape sequence recolour a terminal."""
    return "".join(ch if unicodedata.category(ch) not in _CONTROL else _ESCAPES.get(ch) or repr(ch)[1:-1]
                   for ch in text)


def _describe_bad(root: str, bad: list[dict], ok: int, staged: int) -> str:
    shown_bad = "\n".join(f"  - {shown(b['where'])}: {shown(b['reason'])}" for b in bad[:50])
    more = f"\n  ... and {len(bad) - 50} more" if len(bad) > 50 else ""
    fix = f"fix or remove them, or pass --skip-bad to ingest the other {ok}" if ok else "no file is a readable image"
    if ok and staged:
        fix += f" (the {staged} shard(s) finished are staged: a rerun with --skip-bad reuses them)"
    return (f"{shown(root)}: {len(bad)} of {len(bad) + ok} files are not readable images; nothing was written to the "
            f"catalog:\n{shown_bad}{more}\n{fix}")


def _sample(d: Decoded, embedding: np.ndarray | None) -> Sample:
    f = d.file
    return Sample(
        sample_id="real-" + hashlib.sha256(f"{f.rel}|{d.sha256}".encode()).hexdigest()[:20],
        origin="real", class_id=f.class_id, class_name=f.class_name, source_path=f.rel, png=d.data,
        image_sha256=d.sha256, width=d.width, height=d.height,
        # The file's own time, not the ingest's: rows are a function of the files, so a rerun writes the same shard.
        created_at=f.modified,
        status=KEPT, embedding=embedding,
    )


class _ShardRun:
    """Decodes, embeds and writes one shard (or, ``check_only``, only decodes it to find bad files)."""

    def __init__(self, source: Source, pool, budget: PixelBudget, embed: EmbedSteps | None, embedding_model: str | None,
                 batch: int, progress: IngestProgress, report: Callable[[IngestProgress], None], window: int):
        self.source, self.pool, self.budget, self.embed = source, pool, budget, embed
        self.embedding_model, self.batch, self.progress, self.report = embedding_model, batch, progress, report
        self.window = window

    def run(self, stage: Stage, index: int, files: list[SourceFile],
            check_only: bool) -> tuple[StagedShard | None, list[dict]]:
        """The staged shard (None when ``check_only``) and the bad files found in it."""
        writer = None if check_only else stage.writer(index)
        skipped, size, chunk, held = [], 0, [], 0
        embed = None if check_only else self.embed
        try:
            work = partial(decode_file, self.source, budget=self.budget, embed=embed)
            for d in ordered_map(self.pool, work, files, self.window):
                self.progress.done += 1
                if d.error is not None:
                    where = self.source.where(d.file)
                    skipped.append({"file": d.file.rel, "where": where, "reason": d.error.removeprefix(f"{where}: ")})
                    self.progress.bad += 1
                    continue
                size += len(d.data)
                self.progress.images += 1
                self.progress.source_bytes += len(d.data)
                if writer is None:
                    if self.progress.done % self.batch == 0:
                        self.report(self.progress)
                    continue
                chunk.append(d)
                held += nbytes(d.for_embedder)
                if len(chunk) >= self.batch or held >= EMBED_BYTES:
                    self._write(writer, chunk, embed)
                    chunk, held = [], 0
            if writer is None:
                return None, skipped
            if chunk:
                self._write(writer, chunk, embed)
            return writer.finish(skipped, size), skipped
        except BaseException:
            if writer is not None:
                writer.abort()
            raise

    def _write(self, writer, chunk: list[Decoded], embed: EmbedSteps | None) -> None:
        emb = embed.run([d.for_embedder for d in chunk]) if embed is not None else [None] * len(chunk)
        table = samples_to_table([_sample(d, e) for d, e in zip(chunk, emb)], embedding_model=self.embedding_model)
        writer.add(table, np.stack([d.thumb for d in chunk]), sum(len(d.data) for d in chunk))
        self.report(self.progress)


def ingest_folder(
    catalog: Catalog,
    name: str,
    root: str | Path | Source,
    embed: EmbedFn | EmbedSteps | None = None,
    embedding_model: str | Callable[[], str] | None = None,
    restricted: bool = False,
    description: str = "",
    batch: int = 256,
    skip_bad: bool = False,
    *,
    staging: Path | None = None,
    workers: int | None = None,
    shard_rows: int = SHARD_ROWS,
    shard_bytes: int = SHARD_BYTES,
    progress: Callable[[IngestProgress], None] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Manifest:
    """Add every image under ``root`` (a folder, an fsspec URL such as ``s3://bucket/prefix``, or a source
    from ``catalog.ingest_source.open_source``) to the real dataset ``name`` as a new version.

    If any file is not a readable image, nothing is committed and ``IngestError`` names each bad file,
    unless ``skip_bad``, which leaves them out and lists them in the manifest's ``prov["skipped"]``.
    ``embedding_model`` may be a function (called once the source is listed, so a caller can load its
    model only once the layout is known to be good). ``embed``: a function of a list of images, or
    ``EmbedSteps`` whose per-image part runs on the decoding threads. ``staging``: where shards wait for the commit; a
    rerun with the same arguments after a kill reuses what it finished (default: a temporary folder
    beside the catalog, removed at the end, so nothing is resumed). ``workers``: decoding threads
    (default: every core). ``progress`` is called as the ingest advances.
    """
    source = root if isinstance(root, (LocalSource, UrlSource)) else open_source(root, storage_options)
    check_target(catalog, name, restricted)
    files = source.files()  # the layout is checked before the catalog is touched or a model loads
    if callable(embedding_model):
        embedding_model = embedding_model()
    if embed is not None and not isinstance(embed, EmbedSteps):
        embed = EmbedSteps.of(embed)
    plan = plan_shards(files, shard_rows, shard_bytes)
    classes = sorted({(f.class_id, f.class_name) for f in files})
    key = ingest_key(name, source.label, [c for _, c in classes], files, embedding_model, plan)
    if staging is None:  # beside a catalog folder (same file system: the commit renames); at a URL, anywhere
        with tempfile.TemporaryDirectory(prefix=".synthgen-ingest-", dir=None if catalog.url else catalog.root.parent) as tmp:
            return _ingest(catalog, name, source, files, plan, key, Path(tmp), embed, embedding_model, restricted,
                           description, batch, skip_bad, workers, progress)
    return _ingest(catalog, name, source, files, plan, key, Path(staging), embed, embedding_model, restricted,
                   description, batch, skip_bad, workers, progress)


def _ingest(catalog, name, source, files, plan, key, staging, embed, embedding_model, restricted, description, batch,
            skip_bad, workers, progress) -> Manifest:
    state = IngestProgress(files=len(files), shards=len(plan))
    report = progress or (lambda _: None)
    with Stage(staging, name, key, committed_shard(catalog, name)) as stage:
        done = _already_committed(catalog, name, key)
        if done is not None:  # a rerun after a kill past the commit: finish what followed it
            pixel_guard(DatasetVersion(catalog, done))
            stage.remove()
            state.already_committed = True
            report(state)
            return done
        workers = workers or machine_cores()
        shards: list[StagedShard] = []
        bad: list[dict] = []
        with ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
            # A window of two batches: the decode threads fill the next batch while this thread embeds one
            # (one batch left them idle for part of each forward: 0.68 -> 0.74 of cores x bare at 10k).
            run = _ShardRun(source, pool if workers > 1 else None, PixelBudget(), embed, embedding_model, batch, state,
                            report, window=2 * batch + 4 * workers)
            for index, span in enumerate(plan):
                shard = stage.staged(index)
                if shard is not None:
                    state.reused_shards += 1
                    state.done += len(span)
                    state.bad += len(shard.skipped)
                    state.images += len(span) - len(shard.skipped)
                    state.source_bytes += shard.source_bytes
                else:
                    state.checking = bool(bad) and not skip_bad
                    shard, found = run.run(stage, index, [files[i] for i in span], state.checking)
                    if shard is None:  # only checked
                        bad += found
                        continue
                shards.append(shard)
                bad += shard.skipped
                report(state)
        report(state)
        ok = state.images
        if bad and (not skip_bad or not ok):
            raise IngestError(_describe_bad(source.label, bad, ok, sum(1 for s in shards if s.ref)))
        failpoint("before-commit", f"ingest of {len(shards)} shards into {name}")
        manifest = _commit(catalog, name, source, stage, shards, bad, key, embedding_model, restricted, description)
        store_guard(DatasetVersion(catalog, manifest), manifest.rows, staged_in_order(stage, shards))
        stage.remove()
        return manifest


def committed_shard(catalog: Catalog, name: str) -> Callable[[ShardRef], Path]:
    """Where a shard is read once a commit took it from staging: the catalog's file, or its verified copy from a URL."""
    if catalog.url is None:
        return lambda ref: catalog.path(name) / ref.file
    return lambda ref: catalog.verified_shard(name, ref)


def _already_committed(catalog: Catalog, name: str, key: str) -> Manifest | None:
    if not catalog.exists(name) or catalog.head(name) is None:
        return None
    head = catalog.manifest(name)
    return head if head.job_digest == key else None


def _commit(catalog, name, source, stage, shards, bad, key, embedding_model, restricted, description) -> Manifest:
    refs = [s.ref for s in shards if s.ref is not None]
    rows = sum(r.rows for r in refs)
    catalog.create(name, "real", description=description, restricted=restricted)  # only now: nothing listed before
    prov: dict = {"wasGeneratedBy": {"activity": "ingest", "used": source.label}}
    if bad:
        prov["skipped"] = [{"file": b["file"], "reason": b["reason"]} for b in bad]
    return catalog.commit(name, refs, keep_parent_shards=False, job_digest=key, embedding_model=embedding_model,
                          message=f"ingest {rows} images from {source.label}", prov=prov, adopt_from=stage.folder)
