"""Where post-processing runs: how many workers, and the process pool for PNG encoding.

The engine finishes sampled batches on ``workers`` threads. The finishing
stages release the GIL (torch's CLIP forward, numpy, FAISS, hashlib, the
default PNG encoder, OpenCV's), but Pillow encodes PNGs into memory with the
GIL held, so with ``png_encoder: pillow`` the encode stage sends its
per-image work (``png.encode_pixels``) to a ``concurrent.futures`` process
pool of the same size. With one worker everything runs inline: no pool, no
copies.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor


def machine_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(device: str, sampler_threads: int | None) -> int:
    """Post-processing workers for a generator on ``device``.

    The sampler keeps its own cores: on the CPU the denoiser's threads, on a
    GPU one core for the thread that launches the kernels. Never below one.
    """
    reserved = (sampler_threads or 1) if device == "cpu" else 1
    return max(1, machine_cores() - reserved)


_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def encode_pool(workers: int) -> ProcessPoolExecutor | None:
    """A process pool of ``workers`` for the encode stage, started once per process; None for one worker.

    ``spawn``, not ``fork``: the calling process has threads (Prefect's, the
    engine's) and forking a threaded process can copy a held lock.
    """
    if workers <= 1:
        return None
    with _pools_lock:
        if workers not in _pools:
            _pools[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        return _pools[workers]


@atexit.register
def _shutdown() -> None:
    for pool in _pools.values():
        pool.shutdown(wait=False, cancel_futures=True)
