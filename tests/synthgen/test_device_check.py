"""Device checks: a device this process lacks is a spec error naming the field, before anything starts."""

import sys

import pytest

from synthgen.device_check import check_devices, device_problem
from synthgen.spec import SpecError, parse_spec
from tests.conftest import small_job


def test_cpu_and_auto_always_pass():
    assert device_problem("cpu") is None and device_problem("auto") is None


def test_missing_cuda_or_gpu_index_is_named(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in device_problem("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_problem("cuda") is None and device_problem("cuda:1") is None
    assert device_problem("cuda:99") == "there is no GPU 99: torch sees 2 (cuda:0..cuda:1)"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert "MPS is not available" in device_problem("mps")


def test_every_device_field_is_checked_and_a_work_pool_samples_elsewhere(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for change, field in [({"generator": {"device": "cuda:3"}}, "generator.device: cuda:3"),
                          ({"generator": {"devices": ["cuda:0", "cuda:1"]}}, "generator.devices: cuda:1"),
                          ({"embedder": {"device": "cuda:2"}}, "embedder.device: cuda:2")]:
        with pytest.raises(SpecError, match=field):
            check_devices(parse_spec(small_job(**change)))
    check_devices(parse_spec(small_job(generator={"device": "cuda:3"})), generator_here=False)  # the workers' GPU
    with pytest.raises(SpecError, match="embedder.device"):
        check_devices(parse_spec(small_job(embedder={"device": "cuda:2"})), generator_here=False)


def test_a_cpu_job_does_not_import_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # importing it would raise
    check_devices(parse_spec(small_job(generator={"device": "cpu"})))
