"""Several GPUs on one machine, no server: one worker process per device through Prefect's ProcessPoolTaskRunner.

Each worker claims one device when it starts (a queue handed to the pool's
initializer), pins ``CUDA_VISIBLE_DEVICES`` to it before torch touches CUDA,
loads the model once (``flows.models`` caches per process) and takes whole
shards. Shards are the same tasks as in-process (each decided as soon as
the shards before it are, else staged and decided by the commit in plan
order), so the committed version is the one a one-device run writes. Many machines still go through a work pool (``flows.distributed``).
"""

from __future__ import annotations

import multiprocessing
import os

from catalog import RunRef
from flows.settings import Paths, Settings
from synthgen.plan import Shard
from synthgen.spec import JobSpec

_claimed: dict[str, object] = {}  # this worker's device and how many workers share the machine


def job_devices(job: JobSpec) -> list[str]:
    """The devices to run shards on: ``generator.devices``, else every visible GPU (one or none: in-process)."""
    if job.generator.devices:
        return list(job.generator.devices)
    if job.generator.device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 1:
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


def _claim_device(queue, n_workers: int) -> None:
    """Pool initializer: take one device from the queue for the life of this worker process."""
    device = queue.get(timeout=60)
    if device.startswith("cuda:"):
        # The worker sees only its GPU, as "cuda": rows record the device as a one-GPU run does.
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        device = "cuda"
    _claimed.update(device=device, workers=n_workers)


def worker_device() -> str | None:
    """The device this worker process claimed, or None outside a device pool."""
    return _claimed.get("device")  # type: ignore[return-value]


def device_workers() -> int:
    """How many device workers share this machine's cores (1 outside a device pool)."""
    return int(_claimed.get("workers", 1))


def run_on_devices(job: JobSpec, shards: list[Shard], paths: Paths, runs: RunRef, devices: list[str],
                   settings: Settings) -> list:
    """Stage ``shards`` on one worker process per device; the reports, in shard order."""
    from prefect.task_runners import ProcessPoolTaskRunner

    from flows.tasks import shard_task_with_policy

    queue = multiprocessing.get_context("spawn").Queue()  # the runner's pool spawns its workers
    for device in devices:
        queue.put(device)
    task = shard_task_with_policy(settings)
    runner = ProcessPoolTaskRunner(max_workers=len(devices), initializer=_claim_device,
                                   initargs=(queue, len(devices)))
    with runner:
        futures = [runner.submit(task, {"spec": job, "shard": s, "paths": paths, "runs": runs})
                   for s in shards]
        return [f.result() for f in futures]
