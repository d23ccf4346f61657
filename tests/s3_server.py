"""A real S3-protocol server on loopback for tests: moto's server mode, dummy credentials, no network."""

from __future__ import annotations

import itertools
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

_buckets = itertools.count()

# Dummy credentials and a fixed region: nothing may reach a real AWS account, or
# wait on an instance-metadata lookup. AWS_ENDPOINT_URL also points any boto client
# created without an explicit endpoint at the local server.
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class S3Server:
    endpoint: str

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def bucket(self, prefix: str = "synthgen") -> str:
        """A new, empty bucket (one per test keeps tests independent on one server)."""
        name = f"{prefix}-{next(_buckets)}"
        self.client().create_bucket(Bucket=name)
        return name

    @property
    def options(self) -> dict:
        return {"endpoint_url": self.endpoint}


@contextmanager
def moto_s3() -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (a free port) with the test environment; stop it after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("AWS_PROFILE", raising=False)
        for key in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):  # ignore the user's ~/.aws
            mp.setenv(key, os.devnull)
        for key, value in _ENV.items():
            mp.setenv(key, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            mp.setenv("AWS_ENDPOINT_URL", endpoint)
            yield S3Server(endpoint)
        finally:
            server.stop()
