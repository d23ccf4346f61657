"""The image's pins (``constraints.txt``, used by the Dockerfile) cover synthgen's dependencies and satisfy them."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            out[canonicalize_name(name)] = version
    return out


def test_every_dependency_is_pinned_within_what_pyproject_asks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = pins()
    for spec in project["dependencies"] + project["optional-dependencies"]["ray"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name == "torch":  # the image installs the build for its hardware first
            assert name not in pinned
            continue
        assert name in pinned, f"{req.name} is not in constraints.txt: run `make constraints`"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[name]}, outside {req.specifier}: run `make constraints`")


def test_the_dockerfile_installs_within_the_pins():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY constraints.txt" in dockerfile and "-c /wheels/constraints.txt" in dockerfile
