"""The job's components, loaded once per process and shared by all its shards.

Generator, embedder and the pixel guard are injected into the stages
(diffusers' ``register_modules`` idea): the flow loads them here, tests pass
tiny real ones. One lock serialises loading, so a prefetch thread and a task
never load the same model twice.
"""

from __future__ import annotations

import threading
from functools import lru_cache

from catalog import Catalog, open_version
from catalog.guard import pixel_guard
from flows.local_devices import worker_device
from flows.settings import Paths
from synthgen.embedder import Embedder, load_embedder
from synthgen.generators import Generator, load_generator
from synthgen.memorisation import PixelGuard
from synthgen.runtime import set_threads
from synthgen.spec import EmbedderSpec, GeneratorSpec, JobSpec


@lru_cache(maxsize=4)
def _generator(gen_json: str, kind: str, class_ids: tuple[int, ...]) -> Generator:
    spec = GeneratorSpec.model_validate_json(gen_json)
    set_threads(spec.threads)
    return load_generator(spec, kind, list(class_ids))


@lru_cache(maxsize=4)
def _embedder(emb_json: str) -> Embedder:
    return load_embedder(EmbedderSpec.model_validate_json(emb_json))


_load_lock = threading.Lock()  # one loader at a time: a prefetch and a task never load twice


def get_generator(spec: JobSpec) -> Generator:
    """The job's generator, loaded once per process (on the device a device worker claimed, if any)."""
    ids = tuple(c.id for c in spec.conditioning.classes or [])
    gen_spec = spec.generator
    if worker_device():
        gen_spec = gen_spec.model_copy(update={"device": worker_device()})
    with _load_lock:
        return _generator(gen_spec.model_dump_json(), spec.conditioning.kind, ids)


def get_embedder(spec: JobSpec) -> Embedder:
    """The job's embedder, loaded once per process."""
    with _load_lock:
        return _embedder(spec.embedder.model_dump_json())


def prefetch_models(spec: JobSpec, paths: Paths | None = None) -> threading.Thread:
    """Load the models, and with ``paths`` the pixel guard, in a background thread (e.g. while Prefect's server starts).

    Errors are not raised here: the flow's own load raises them again, in
    the right place.
    """

    def load() -> None:
        try:
            get_generator(spec)
            get_embedder(spec)
            if paths is not None:
                get_guard(spec, paths)  # otherwise the first shard decodes the real images
        except Exception:  # noqa: BLE001 - reported by the flow's load task
            pass

    thread = threading.Thread(target=load, name="synthgen-prefetch", daemon=True)
    thread.start()
    return thread


@lru_cache(maxsize=2)
def _guard(catalog_root: str, real_ref: str, manifest_sha: str) -> PixelGuard:
    return pixel_guard(open_version(Catalog(catalog_root), real_ref))


def get_guard(spec: JobSpec, paths: Paths) -> PixelGuard | None:
    """The pixel-space memorisation guard over the spec's real dataset (head), if any."""
    real = spec.dedup.real_dataset
    if not real or spec.dedup.pixel_threshold is None:
        return None
    cat = Catalog(paths.catalog)
    head = cat.head(real)
    with _load_lock:
        return _guard(str(paths.catalog), f"{real}@{head}", cat.manifest_sha256(real, head))
