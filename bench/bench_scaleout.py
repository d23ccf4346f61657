"""Scale-out: 1 vs 2 workers of a simulated GPU on a job engine, through ``run_job``: scaling, bytes, driver RSS.

Each worker's generator is a simulated GPU (``bench_overlap.SimulatedGPU``:
sampling is a sleep of ``batch / gpu_img_s`` seconds, 20 img/s by default,
then precomputed 512-px photo-like images); every other stage is the real
one (PNG + pixel hash, a 224-px / patch-32 CLIP, scores) on the worker, and
the driver decides and writes the shards in plan order. A worker builds its
components itself from ``SimulatedSetup`` (picklable: a Ray actor unpickles
it and loads its own models). Each configuration runs in a fresh process,
so that the driver's peak RSS is its own. Reported per configuration:

* ``wall_s``: ``run_job``'s start to the last shard decided (the commit left
  out), worker start and model loads included;
* ``img_s``: the steady rate: the images of the shards decided after the
  first quarter of them over the time from the last of that quarter decided
  to the last shard decided (worker start, model loads and the pipeline
  filling up left out); ``of_gpu``: ``img_s`` / (workers x ``gpu_img_s``),
  how busy the simulated GPUs were;
* ``efficiency`` (2 workers' rows): ``img_s`` / (2 x the 1-worker ``img_s``); goal >= 0.9;
  ``end_to_end_efficiency``: the same over ``wall_s``;
* ``bytes_ratio``: Parquet bytes written under the staging folder and the
  dataset's shards (every file seen while the job ran) / the new version's
  shards; goal <= 1.1;
* ``driver_peak_rss_mb``: ``ru_maxrss`` of the driver process.

Engines (``--engine``), one function each in ``ENGINES``: ``ray`` (a local
Ray cluster this process starts with one CPU per worker, and
``flows.executors.ray_cluster.RayExecutor``). A ``pool`` engine (Prefect work
pool) is one more function of the same shape.

    python bench/bench_scaleout.py --engine ray [--gpu-img-s 20] [--shards 16] [--shard-size 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# A local ray.init() turns token auth on and writes ~/.ray/auth_token, which then turns it on for some processes of
# any later `ray start` cluster on the machine (workers fail to join): off for this loopback-only cluster.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from prefect import flow  # noqa: E402

from bench.bench_job import parquet_bytes  # noqa: E402
from bench.bench_overlap import SimulatedGPU, job  # noqa: E402
from bench.bench_throughput import photo_like  # noqa: E402
from catalog import Catalog, RunRef  # noqa: E402
from flows.executors.prefect_pool import SHARD_FLOW, PrefectPoolExecutor, stage_shard  # noqa: E402
from flows.executors.ray_cluster import RayExecutor  # noqa: E402
from flows.job.components import ComponentLoader, with_generator  # noqa: E402
from flows.job.run import run_job  # noqa: E402
from flows.processes import stop_group  # noqa: E402
from flows.settings import Settings, configure  # noqa: E402
from synthgen.spec import parse_spec  # noqa: E402

WORKERS = (1, 2)
GOALS = {"efficiency": 0.9, "bytes_ratio": 1.1}


class SimulatedSetup:
    """A job's components with a simulated GPU for a generator; picklable, so each worker builds its own."""

    def __init__(self, spec, catalog_root: str, img_s: float, px: int):
        self.loader, self.img_s, self.px = ComponentLoader(spec, catalog_root), img_s, px

    def __call__(self, device: str | None = None, share: int = 1):
        parts = self.loader(device, share)
        return with_generator(parts, SimulatedGPU(parts.generator, photo_like(16, self.px), self.img_s))

    def embedder(self):
        return self.loader.embedder()


@contextmanager
def ray_engine(workers: int, data_dir: Path) -> Iterator[object]:
    """A local Ray cluster with one CPU per worker, and a ``RayExecutor`` with that many actors."""
    import ray

    os.environ["PYTHONPATH"] = str(REPO)  # the actors import this checkout (bench/ for SimulatedSetup)
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield RayExecutor(workers=workers)
    finally:
        ray.shutdown()


POOL = "bench-gpu"
SIMULATED_SHARD_FLOW = "bench.bench_scaleout.simulated_shard_flow"


@flow(name=SHARD_FLOW, log_prints=True)
def simulated_shard_flow(spec: dict, shard_index: int, data_dir: str | None, runs: dict, settings: Settings | None = None,
                         plan_slice: dict | None = None) -> dict:
    """The work pool's shard flow with a simulated GPU (its rate and image size from the worker's environment)."""
    img_s, px = float(os.environ["BENCH_GPU_IMG_S"]), int(os.environ["BENCH_PX"])
    return stage_shard(spec, shard_index, data_dir, runs, settings, plan_slice,
                       lambda job_spec, root: SimulatedSetup(job_spec, root, img_s, px))


@contextmanager
def pool_services(workers: int, args: argparse.Namespace, log_dir: Path) -> Iterator[dict]:
    """In the parent: ``prefect server start`` and ``workers`` process workers, each a machine of its own
    (its own ``SYNTHGEN_HOST``, so its own slot), one shard at a time; the child's environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(log_dir / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PYTHONPATH=str(REPO), BENCH_GPU_IMG_S=str(args.gpu_img_s), BENCH_PX=str(args.px),
               SYNTHGEN_RETRY_DELAYS="0")
    bin_dir = Path(sys.executable).parent
    procs = [subprocess.Popen([str(bin_dir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                               str(port), "--no-ui"], env=env, stdout=open(log_dir / "server.log", "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)]
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(env["PREFECT_API_URL"] + "/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or procs[0].poll() is not None:
                    raise RuntimeError((log_dir / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        for i in range(workers):
            procs.append(subprocess.Popen(
                [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1",
                 "--name", f"machine-{i}"], env={**env, "SYNTHGEN_HOST": f"bench-machine-{i}"}, cwd=REPO,
                stdout=open(log_dir / f"worker-{i}.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True))
        yield env
    finally:
        for proc in reversed(procs):
            stop_group(proc)


@contextmanager
def pool_engine(workers: int, data_dir: Path) -> Iterator[object]:
    """In the child: a ``PrefectPoolExecutor`` on the parent's pool, deploying the simulated-GPU shard flow."""
    yield PrefectPoolExecutor(POOL, str(data_dir), Settings(), entrypoint=SIMULATED_SHARD_FLOW)


# Per engine: the executor in the child (workers, data folder), and what the parent starts around the child.
ENGINES: dict[str, Callable[[int, Path], ContextManager[object]]] = {"ray": ray_engine, "pool": pool_engine}
SERVICES: dict[str, Callable[[int, argparse.Namespace, Path], ContextManager[dict]]] = {"pool": pool_services}


def child(engine: str, workers: int, models: Path, args: argparse.Namespace) -> dict:
    """One job on ``workers`` workers of ``engine`` in this process; its measurements."""
    n = args.shards * args.shard_size
    spec = parse_spec(job(models / "sd", models / "clip", args.px, n, args.shard_size, args.batch))
    with tempfile.TemporaryDirectory() as tmp, ENGINES[engine](workers, Path(tmp)) as executor:
        paths = configure(tmp)
        catalog = Catalog(paths.catalog)
        setup = SimulatedSetup(spec, str(paths.catalog), args.gpu_img_s, args.px)
        folders = [paths.staging, catalog.path(spec.output.dataset) / "shards"]
        written: dict[str, int] = {}
        done: list[float] = []

        def on_shard(_report) -> None:
            done.append(time.perf_counter())
            written.update(parquet_bytes(folders))  # staged or job files a later step moves or removes

        t0 = time.perf_counter()
        runs = RunRef(prefect_flow_run_id=f"bench-scaleout-{uuid.uuid4()}", mlflow_run_id=None)

        def go():
            return run_job(spec, paths=paths, executor=executor, setup=setup, catalog=catalog, runs=runs,
                           on_shard=on_shard)

        if engine == "pool":  # the pool executor submits flow runs from within the job's own flow run
            result = flow(name="bench-scaleout")(go)()
        else:
            result = go()
        written.update(parquet_bytes(folders))
        m = catalog.manifest(spec.output.dataset, result.version)
        final = sum((catalog.path(spec.output.dataset) / s.file).stat().st_size for s in m.shards if s.rows)
        first = args.shards // 4  # decided before the steady part is timed
        steady = (args.shards - first) * args.shard_size / (done[-1] - done[first - 1])
        return {"engine": engine, "workers": workers, "images": n, "gpu_img_s": args.gpu_img_s, "px": args.px,
                "wall_s": done[-1] - t0, "img_s": steady,
                "of_gpu": steady / (workers * args.gpu_img_s), "bytes_ratio": sum(written.values()) / final,
                "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "load_avg_1m": os.getloadavg()[0]}  # other work on the same cores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=sorted(ENGINES), required=True)
    ap.add_argument("--gpu-img-s", type=float, default=20.0, help="each simulated GPU's rate")
    ap.add_argument("--px", type=int, default=512)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--models", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.engine, args.child, Path(args.models), args)))
        return

    from bench.report import emit
    from tests.tiny_clip import build_tiny_clip
    from tests.tiny_sd import build_tiny_sd

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        build_tiny_sd(models / "sd", vae_levels=4)  # 64-px latents, a VAE that upsamples 8x: 512-px images
        build_tiny_clip(models / "clip", 224, 32)
        for workers in WORKERS:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--child", str(workers), "--models", str(models)]
            logs = models / f"services-{workers}"
            logs.mkdir()
            with SERVICES.get(args.engine, lambda *_: nullcontext(dict(os.environ)))(workers, args, logs) as env:
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**env, "PYTHONPATH": str(REPO)})
            if proc.returncode:
                sys.exit(f"{args.engine} with {workers} worker(s) failed:\n{proc.stderr[-3000:]}")
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    one = rows[0]
    for r in rows[1:]:
        r["efficiency"] = r["img_s"] / (r["workers"] * one["img_s"])
        r["end_to_end_efficiency"] = (r["images"] / r["wall_s"]) / (r["workers"] * one["images"] / one["wall_s"])
    emit(f"scaleout_{args.engine}", f"Scale-out on {args.engine}: 1 vs 2 simulated GPUs at {args.gpu_img_s:g} img/s, "
         f"{args.px} px", rows, {"goals": GOALS, "shards": args.shards, "shard_size": args.shard_size,
                                 "batch": args.batch}, args.json)


if __name__ == "__main__":
    main()
