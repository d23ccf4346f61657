"""Choosing the Ray engine, refusing a bad address or ray missing before anything starts, an actor's device and
load failure (no cluster here: tests/flows/executors/test_ray_cluster.py starts one)."""

from __future__ import annotations

import socket
import sys

import pytest
import yaml

from flows.executors.ray_address import RayClusterError, check_address, check_engine, host_port
from flows.executors.ray_cluster import RayExecutor, SetupFailed, ShardWorker, actor_device, import_ray
from flows.generate import choose_executor, describe
from flows.settings import Paths, Settings
from synthgen.plan import Shard
from synthgen.spec import parse_spec
from tests.conftest import small_job
from tests.flows.cli_process import assert_clean_error, synthgen
from tests.flows.test_schedule import free_port


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)), (" head.cluster:6380 ", ("head.cluster", 6380)),
    ("ray://10.0.0.5:10001", ("10.0.0.5", 10001)), ("[::1]:6379", ("::1", 6379)),
])
def test_an_address_is_host_and_port(address, expected):
    assert host_port(address) == expected


@pytest.mark.parametrize("address", ["", "127.0.0.1", ":6379", "head:port", "head:0", "head:70000",
                                     "http://head:8265", "ray://head", "head:6379/x"])
def test_a_malformed_address_says_what_to_give(address):
    with pytest.raises(RayClusterError, match="host:port"):
        host_port(address)


def test_an_address_nobody_answers_is_named():
    with socket.socket() as s:  # bound, not listening: connecting is refused
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(RayClusterError, match=f"nothing answers at {address}"):
            check_address(address)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_address(f"127.0.0.1:{s.getsockname()[1]}")  # something listens: ray.init says the rest


def test_a_pool_and_a_ray_cluster_at_once_are_refused():
    check_engine("gpu", None)
    check_engine(None, "127.0.0.1:6379")
    with pytest.raises(RayClusterError, match="SYNTHGEN_SHARD_POOL.*SYNTHGEN_RAY_ADDRESS.*unset one"):
        check_engine("gpu", "127.0.0.1:6379")


def test_ray_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(RayClusterError, match=r"pip install 'synthgen\[ray\]'"):
        import_ray()


def test_the_settings_choose_the_ray_engine(tmp_path):
    job = parse_spec(small_job())
    settings = Settings(ray_address="127.0.0.1:6379", ray_workers=3, shard_retries=4, retry_delays=[1.0])
    executor = choose_executor(job, Paths(tmp_path), settings, None)
    assert isinstance(executor, RayExecutor) and executor.address == "127.0.0.1:6379" and executor.workers == 3
    assert executor.retry.retries == 4 and executor.keep_workers  # run_job closes it after the last round
    assert describe(executor) == "shards on the actors of the Ray cluster at 127.0.0.1:6379"
    assert not isinstance(choose_executor(job, Paths(tmp_path), Settings(), None), RayExecutor)


def test_run_refuses_a_dead_address_before_anything_is_written(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(small_job("ray-out", dedup={"real_dataset": None})))
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = synthgen(tmp_path / "data", "run", str(spec), env={"SYNTHGEN_RAY_ADDRESS": address})
    assert_clean_error(proc, ["SYNTHGEN_RAY_ADDRESS", f"nothing answers at {address}", "ray start --head"])
    assert not (tmp_path / "data").exists()  # no data folder, no MLflow or Prefect database


@pytest.mark.parametrize("device, gpus, expected", [
    ("auto", True, "cuda"), ("cuda", True, "cuda"), ("auto", False, "cpu"), ("cpu", False, None),
])
def test_an_actor_loads_on_the_device_ray_gives_it(device, gpus, expected):
    spec = parse_spec(small_job(generator={"device": device}))
    assert actor_device(spec, gpus) == expected  # None: the spec's own (cpu)


@pytest.mark.parametrize("device, gpus, message", [("cuda:1", True, "sees only the GPU"), ("cuda", False, "no GPU")])
def test_a_device_no_actor_can_have_is_refused(device, gpus, message):
    with pytest.raises(RayClusterError, match=message):
        actor_device(parse_spec(small_job(generator={"device": device})), gpus)


def test_an_actor_that_cannot_load_its_components_says_so():
    def setup(device=None, share=1):
        raise OSError("model folder missing")

    with pytest.raises(SetupFailed, match="could not load the job's components(.|\n)*model folder missing"):
        ShardWorker(setup, None, None, False).run(Shard(0, 0, 3))
