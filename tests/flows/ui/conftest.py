"""A data folder for ``synthgen ui``'s tests, and the app served from it by the real CLI.

``ui_world``: the real digits ingested twice (``digits-real`` open,
``digits-secret`` restricted, other images), and two small jobs whose last
shard is planted copies of one of them, so each version holds kept and
blocked rows: ``digits-ui`` (guarded against the open set, with its card
written) and ``digits-guarded`` (against the restricted one); ``digits-copies``,
a plain run guarded against the restricted set with loose thresholds, so
that some rows are blocked copies of it, withheld without the flag; and
``markup``, three rows whose description, class and prompt are HTML.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from catalog import Catalog, RunRef, ingest_folder, open_version, samples_to_table
from flows.job.run import run_job
from flows.settings import configure
from synthgen.digits import CLASS_NAMES, export_image_folder
from synthgen.plan import make_shards
from synthgen.spec import parse_spec
from tests.conftest import REPO, make_samples, small_job
from tests.flows.cli_process import synthgen
from tests.flows.job.test_memorisation_guard import plant_copies
from tests.tree_hash import tree_hash

MARKUP = "<script>alert('x')</script><img src=x onerror=alert(1)>"


def _job_with_planted_copies(paths, dataset: str, real: str, seed: int) -> None:
    """A 24-sample job (3 shards of 8) guarded against ``real``; its last shard is copies of ``real``'s images."""
    spec = parse_spec(small_job(dataset=dataset, per_class=8, dedup={"real_dataset": real}, seed=seed))  # own pixels
    shards = make_shards(spec.total_images, spec.output.shard_size)
    runs = RunRef(prefect_flow_run_id=f"{dataset}-flow-run", mlflow_run_id=f"{dataset}-mlflow-run")
    rows = open_version(Catalog(paths.catalog), real, allow_restricted=True).table(["sample_id", "image"]).to_pylist()
    plant_copies(spec, shards[-1], paths, rows, np.random.default_rng(seed))  # staged, as a worker would
    run_job(spec, paths=paths, runs=runs)  # the other shards generated; all decided in plan order


@pytest.fixture(scope="session")
def ui_world(tmp_path_factory, real_digits_dir, embedder) -> dict:
    root = tmp_path_factory.mktemp("ui")
    paths = configure(root / "data")
    cat = Catalog(paths.catalog)
    ingest_folder(cat, "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    secret = export_image_folder(root / "secret")  # other digits than digits-real's: ids of their own
    (secret / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for folder in secret.iterdir():
        if folder.is_dir():
            for i, f in enumerate(sorted(folder.glob("*.png"))):
                if not 20 <= i < 30:
                    f.unlink()
    ingest_folder(cat, "digits-secret", secret, embedder.embed_images, embedder.name, restricted=True)
    _job_with_planted_copies(paths, "digits-ui", "digits-real", 0)
    _job_with_planted_copies(paths, "digits-guarded", "digits-secret", 1)
    # Planted rows skip the provenance stage (no real_dataset): a plain run's blocked rows carry it.
    loose = {"real_dataset": "digits-secret", "real_threshold": 0.6, "pixel_threshold": 0.5}
    run_job(parse_spec(small_job(dataset="digits-copies", classes=(0, 1), dedup=loose)), paths=paths,
            runs=RunRef(prefect_flow_run_id="digits-copies-flow-run"))
    card = synthgen(paths.root, "card", "digits-ui", "--write")
    assert card.returncode == 0, card.stderr
    cat.create("markup", "synthetic", description=MARKUP)  # data that looks like HTML: shown, never run
    samples = make_samples(3, start=900)
    for s in samples:
        s.class_name, s.prompt = MARKUP, MARKUP
    cat.commit("markup", [cat.write_shard("markup", samples_to_table(samples, embedding_model="m"))])
    return {"data": paths.root, "catalog": cat, "catalog_hash": tree_hash(paths.catalog)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``synthgen --data-dir DATA [--catalog URL] ui --port P [ARGS]`` in a subprocess, until closed."""

    def __init__(self, data: Path, *args: str, catalog: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("SYNTHGEN_DATA",)}
        env.update(PYTHONPATH=str(REPO), SYNTHGEN_MLFLOW_UI_URL="http://mlflow.invalid:5000",
                   SYNTHGEN_PREFECT_UI_URL="http://prefect.invalid:4200")
        self.log = data.parent / f"ui-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "--data-dir", str(data), *(["--catalog", catalog] if catalog else []),
             "ui", "--port", str(self.port), *args],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=data.parent)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(self.url + "/", timeout=5).read()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"synthgen ui did not start:\n{self.log.read_text()}")
                time.sleep(0.3)

    def get(self, path: str) -> tuple[int, bytes, str]:
        """(status, body, content type) of a GET; error statuses are answers too."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=120) as r:
                return r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("content-type", "")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def ui_server(ui_world):
    """The app over ``ui_world`` as a user starts it: no flags (restricted datasets hidden)."""
    server = Server(ui_world["data"])
    yield server
    server.close()
