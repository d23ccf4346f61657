"""The job's components: loaded once per worker by the executor's setup and handed to the shard step.

Generator, embedder and pixel guard are injected into the stages
(diffusers' ``register_modules`` idea): an executor builds them once per
worker (in-process: once per job), tests hand in tiny real ones. Nothing
here caches: whoever holds a ``Components`` decides how long it lives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Protocol

from catalog import Catalog, open_version
from catalog.guard import pixel_guard
from catalog.init_source import load_init_images
from synthgen.embedder import Embedder, load_embedder
from synthgen.generators import Generator, load_generator
from synthgen.init_images import InitImages
from synthgen.memorisation import PixelGuard
from synthgen.runtime import set_threads
from synthgen.spec import JobSpec


# from_pretrained is not thread-safe (transformers initialises weights on the meta device process-wide):
# two loads at once in one process (two jobs in threads, a prefetch beside a run) break each other.
LOADING = threading.Lock()


@dataclass(frozen=True)
class Components:
    """What a shard step needs besides its plan slice."""

    generator: Generator
    embedder: Embedder
    guard: PixelGuard | None = None
    share: int = 1  # how many workers share this machine's cores (device workers: one per device)
    init: InitImages | None = None  # real-image guidance: the real rows samples start from


def load_job_generator(spec: JobSpec, device: str | None = None) -> Generator:
    """The spec's generator, on ``device`` when given (a device worker's claimed device)."""
    gen_spec = spec.generator if device is None else spec.generator.model_copy(update={"device": device})
    set_threads(gen_spec.threads)
    with LOADING:
        return load_generator(gen_spec, spec.conditioning.kind, [c.id for c in spec.conditioning.classes or []],
                              img2img=spec.conditioning.init_images is not None)


def load_job_embedder(spec: JobSpec) -> Embedder:
    """The spec's embedder."""
    with LOADING:
        return load_embedder(spec.embedder)


def load_guard(spec: JobSpec, catalog: Catalog) -> PixelGuard | None:
    """The pixel-space memorisation guard over the spec's real dataset (head), if the spec asks for one."""
    real = spec.dedup.real_dataset
    if not real or spec.dedup.pixel_threshold is None:
        return None
    return pixel_guard(open_version(catalog, f"{real}@{catalog.head(real)}"))


def load_components(spec: JobSpec, catalog: Catalog, device: str | None = None, share: int = 1,
                    embedder: Embedder | None = None) -> Components:
    """Load everything a shard step of ``spec`` needs (``embedder``: one already loaded, e.g. the driver's)."""
    return Components(load_job_generator(spec, device), embedder or load_job_embedder(spec),
                      load_guard(spec, catalog), share, load_init_images(catalog, spec))


def with_generator(parts: Components, generator: Generator) -> Components:
    """``parts`` with another generator (tests and benchmarks inject one)."""
    return replace(parts, generator=generator)


class Setup(Protocol):
    """What an executor calls once per worker to build the components its shard steps use."""

    def __call__(self, device: str | None = None, share: int = 1) -> Components:
        """The components for a worker on ``device`` (None: the spec's) sharing the machine with ``share`` workers."""
        ...

    def embedder(self) -> Embedder:
        """The embedder alone (the driver's decisions need it, not the generator)."""
        ...


class ComponentLoader:
    """Loads a job's components from its spec; picklable, so a worker process can load its own.

    In the process that made it, each component is loaded once and kept by
    this object (whoever holds it decides how long they live); ``prefetch``
    starts the loads in a background thread, e.g. while Prefect's server starts.
    """

    def __init__(self, spec: JobSpec, catalog_root: str, cache: str | None = None):
        """``cache``: where this machine keeps what it reads from a catalog at a URL (the data folder's
        cache/; default ``~/.cache/synthgen``)."""
        self.spec, self.catalog_root, self.cache = spec, str(catalog_root), cache
        self._lock = threading.RLock()  # one loader at a time: a prefetch and the job never load twice
        self._loaded: dict[str, object] = {}

    def __getstate__(self) -> dict:
        # A worker loads its own, and keeps its reads in its own cache: the path is this machine's.
        return {"spec": self.spec, "catalog_root": self.catalog_root}

    def catalog(self) -> Catalog:
        """The job's catalog, reading through this machine's cache."""
        return Catalog(self.catalog_root, cache=self.cache)

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["spec"], state["catalog_root"])

    def _once(self, name: str, load):
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load()
            return self._loaded[name]

    def generator(self) -> Generator:
        return self._once("generator", lambda: load_job_generator(self.spec))

    def embedder(self) -> Embedder:
        return self._once("embedder", lambda: load_job_embedder(self.spec))

    def guard(self) -> PixelGuard | None:
        """The pixel guard over the real set's head when first asked (after an ingest that makes it, say)."""
        return self._once("guard", lambda: load_guard(self.spec, self.catalog()))

    def init_images(self) -> InitImages | None:
        """The real rows the job's samples start from (real-image guidance), or None."""
        return self._once("init", lambda: load_init_images(self.catalog(), self.spec))

    def __call__(self, device: str | None = None, share: int = 1) -> Components:
        if device is not None or share != 1:  # a device worker: its own device, nothing kept here
            return load_components(self.spec, self.catalog(), device, share)
        return Components(self.generator(), self.embedder(), self.guard(), init=self.init_images())

    def prefetch(self, guard: bool = True) -> threading.Thread:
        """Load the models (and with ``guard`` the pixel guard) in a background thread; an error is raised
        again by the job's own load, where it belongs."""

        def load() -> None:
            try:
                self.generator()
                self.embedder()
                if guard:
                    self.guard()
                self.init_images()
            except Exception:  # noqa: BLE001 - the job loads again and reports the error
                pass

        thread = threading.Thread(target=load, name="synthgen-prefetch", daemon=True)
        thread.start()
        return thread


class Given:
    """Components already built (tests and benchmarks hand in tiny or stub ones); in-process executors only."""

    def __init__(self, parts: Components):
        self.parts = parts

    def __call__(self, device: str | None = None, share: int = 1) -> Components:
        return self.parts

    def embedder(self) -> Embedder:
        return self.parts.embedder
