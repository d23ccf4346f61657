"""Device, dtype, thread and version facts about the process that samples."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported inside the functions that use it: a command failing on bad input should not pay
# torch's ~1.3 s import. (Model folders and their hash: synthgen.model_files.)


def resolve_device(device: str) -> str:
    """'auto' picks CUDA, then MPS, then CPU."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def torch_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype for a spec name ('auto': bfloat16 on CUDA, else float32); fp16 on CPU falls back to float32."""
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    dtype = getattr(torch, name)
    if device == "cpu" and dtype == torch.float16:
        return torch.float32  # fp16 matmuls are slow or missing on CPU
    return dtype


def set_threads(threads: int | None) -> None:
    """Pin the CPU threads of torch *and* FAISS (OpenMP).

    Both must be set together: FAISS's ``omp_set_num_threads`` also changes
    the OpenMP pool torch's CPU kernels use (measured: a tiny UNet ran at 13
    or 22 img/s depending on which library set it last).
    """
    if threads:
        import torch

        torch.set_num_threads(threads)
        import faiss

        faiss.omp_set_num_threads(threads)


def pin_helper_thread() -> None:
    """Keep a background helper thread's OpenMP work (FAISS, torch CPU ops) on one core.

    OpenMP thread counts are per calling thread, and a new thread starts at
    the machine's core count: a post-processing thread would otherwise spin
    up a team on every core, including the one the sampler runs on.
    """
    import faiss

    faiss.omp_set_num_threads(1)


def map_threads(fn, items, threads: int) -> list:
    """``fn`` over ``items`` on ``threads`` threads, results in order, each thread single-threaded inside.

    Small products on a 2-thread BLAS or OpenMP team wait at a barrier for
    a thread the OS has descheduled; on a shared machine that was 5-8x slower
    than one thread (measured: 11-13 s vs 1.4-2.4 s for the run-set scan at
    200k). Independent single-threaded work items use every core when it is
    free and never wait for one that is not. numpy's matrix products and
    FAISS's searches release the GIL. Callers limit BLAS to one thread
    (``threadpoolctl``); OpenMP's count is per thread and set here.
    """

    def one(item):
        import faiss

        faiss.omp_set_num_threads(1)  # per calling thread: a new thread would start a team of all cores
        return fn(item)

    if threads <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, items))


def library_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


BUILT_FROM = Path(__file__).parent / "commit.txt"  # written by a package build (the Dockerfile): the commit built


@lru_cache(maxsize=1)
def code_commit() -> str | None:
    """The git commit of the synthgen checkout, with '-dirty' if it has local changes.

    An installed package (a wheel, an image) is no checkout: its commit is the one its build recorded in
    ``synthgen/commit.txt``, else unknown (None). A package installed inside some other checkout (a
    ``.venv`` in a repository) must not report that repository's commit, so git is asked only when
    synthgen's own folder is the top of the checkout.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git at all (a slim image)
        top = ""
    if not top or Path(top).resolve() != root:
        return (BUILT_FROM.read_text().strip() or None) if BUILT_FROM.is_file() else None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


