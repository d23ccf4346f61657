"""Where the Ray cluster is: ``$SYNTHGEN_RAY_ADDRESS`` parsed and checked before a job starts.

Kept apart from ``flows.executors.ray_cluster`` (which needs the components,
and so torch) and free of ``ray`` itself, so that ``synthgen run`` refuses
a mistyped or dead address in well under a second, before anything loads
or is written.
"""

from __future__ import annotations

import importlib.util
import socket

ENV = "SYNTHGEN_RAY_ADDRESS"
CLIENT = "ray://"
CONNECT_TIMEOUT_S = 3.0


INSTALL = "pip install 'synthgen[ray]'"


class RayClusterError(ValueError):
    """The Ray engine cannot be used: ray is not installed, the address is malformed or nothing answers there."""


def check_installed() -> None:
    """Raise ``RayClusterError`` when ray is not importable here (it is an optional extra)."""
    if importlib.util.find_spec("ray") is None:
        raise RayClusterError(f"${ENV} is set, but ray is not installed: {INSTALL}")


def host_port(address: str) -> tuple[str, int]:
    """The host and port of ``host:port`` or ``ray://host:port``; ``RayClusterError`` for anything else."""
    rest = address.strip().removeprefix(CLIENT)
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise RayClusterError(f"${ENV}={address!r}: give the cluster's head as host:port (e.g. 127.0.0.1:6379, "
                              f"on a node of the cluster) or {CLIENT}host:port (Ray Client, e.g. port 10001)")
    return host.strip("[]"), int(port)


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``RayClusterError`` unless ray is installed, ``address`` is well formed and something listens there.

    Only a TCP connect: whether it is really Ray's head is ``ray.init``'s
    to say, but a typo or a cluster that is not running is named here.
    """
    check_installed()
    host, port = host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RayClusterError(f"${ENV}={address!r}: nothing answers at {host}:{port} ({exc.strerror or exc}); "
                              "is the cluster's head running (`ray start --head`)?") from exc


def check_engine(shard_pool: str | None, ray_address: str | None) -> None:
    """Refuse a job told to use a work pool and a Ray cluster at once (which one was meant is not ours to guess)."""
    if shard_pool and ray_address:
        raise RayClusterError(f"both $SYNTHGEN_SHARD_POOL ({shard_pool!r}) and ${ENV} ({ray_address!r}) are set: "
                              "shards run on one engine; unset one of them")
