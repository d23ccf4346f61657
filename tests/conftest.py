"""Shared fixtures: offline env, a Prefect test server, tiny real models, a small catalog.

Everything here is real: the embedded models load through ``from_pretrained``,
Prefect runs on its test harness server, MLflow on SQLite in a temp folder.
"""

from __future__ import annotations

import os

# Before anything imports prefect, mlflow or transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["COLUMNS"] = "200"  # rich wraps CLI output at the terminal width

# Prefect's console log handler binds to whatever sys.stderr is when its logging is first set up.
# If that happens inside a Typer CliRunner call, it is the runner's temporary stream, closed right
# after, and every later Prefect log line fails (a RecursionError in test_cli.py run alone). Set
# Prefect's logging up now, on pytest's session-long stream, in a throwaway home of its own.
import tempfile  # noqa: E402

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="synthgen-test-prefect-"))
from prefect.logging.configuration import setup_logging  # noqa: E402

setup_logging()

import copy
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items):
    """Files marked ``long`` first: `make test` hands whole files to its workers in this order, and a
    long file handed out last would run alone at the end while the other workers sit idle."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: order within stays
DEMO_SPEC = REPO / "jobs" / "digits-demo.yaml"


def small_job(dataset: str = "digits-small", per_class: int = 6, classes=(0, 1, 7), **over) -> dict:
    """The demo spec scaled down: few classes, few images, few steps."""
    spec = yaml.safe_load(DEMO_SPEC.read_text())
    names = {c["id"]: c["name"] for c in spec["conditioning"]["classes"]}
    spec["name"] = dataset + "-job"
    spec["conditioning"]["classes"] = [{"id": i, "name": names[i]} for i in classes]
    spec["images_per_condition"] = per_class
    spec["generator"].update(steps=4, batch_size=8)
    spec["output"] = {"dataset": dataset, "shard_size": 8}
    for key, value in over.items():
        if isinstance(value, dict):
            spec[key] = {**spec.get(key, {}), **value}
        else:
            spec[key] = value
    return copy.deepcopy(spec)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """One Prefect test server for the whole session (starting one takes ~10 s)."""
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def real_digits_dir(tmp_path_factory) -> Path:
    """A class-folder export of 200 real digits (20 per class)."""
    from synthgen.digits import CLASS_NAMES, export_image_folder

    root = export_image_folder(tmp_path_factory.mktemp("real") / "digits")
    (root / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    for folder in root.iterdir():
        if folder.is_dir():
            for f in sorted(folder.glob("*.png"))[20:]:
                f.unlink()
    return root


@pytest.fixture(scope="session")
def embedder():
    from synthgen.embedder import load_embedder
    from synthgen.spec import EmbedderSpec

    return load_embedder(EmbedderSpec())


@pytest.fixture(scope="session")
def demo_run(prefect_server, real_digits_dir, embedder, tmp_path_factory) -> dict:
    """A data folder with the real digits ingested and one small job run through the flow."""
    from catalog import Catalog, ingest_folder
    from flows.generate import generate_dataset
    from flows.settings import configure

    data = tmp_path_factory.mktemp("data")
    paths = configure(data)
    ingest_folder(Catalog(paths.catalog), "digits-real", real_digits_dir, embedder.embed_images, embedder.name)
    result = generate_dataset(small_job(), str(data))
    return {"data": data, "paths": paths, "result": result, "catalog": Catalog(paths.catalog)}


def make_samples(n: int, origin: str = "synthetic", start: int = 0, dim: int = 8, seed: int = 0):
    """``n`` records with real PNG bytes and unit embeddings, no model needed."""
    import numpy as np
    from PIL import Image

    from synthgen.imaging import encode_png, pixel_sha256
    from synthgen.records import KEPT, Sample

    rng = np.random.default_rng(seed + start)
    out = []
    for i in range(start, start + n):
        img = Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), mode="L")
        e = rng.normal(size=dim).astype(np.float32)
        out.append(
            Sample(
                sample_id=f"{origin[0]}{i:05d}", origin=origin, plan_index=i, class_id=i % 3,
                class_name=f"c{i % 3}", png=encode_png(img), image_sha256=pixel_sha256(img),
                width=16, height=16, embedding=e / np.linalg.norm(e), status=KEPT,
            )
        )
    return out
