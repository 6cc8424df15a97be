"""Test helper: a real S3-compatible server on loopback (moto's server mode, in a thread of the test
process) and a fresh bucket per test, so snapshot-bucket tests run against real HTTP requests signed
and parsed by boto3 exactly as against AWS, with nothing to install by hand.

The server's endpoint and dummy credentials go into the environment the standard AWS way
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which both this process and `aonode serve` subprocesses read.
"""
from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

ENV = {"AWS_ACCESS_KEY_ID": "aonode-test", "AWS_SECRET_ACCESS_KEY": "aonode-test",
       "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    endpoint: str
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def client(self):  # a boto3 S3 client on the server (untyped library)
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def create_bucket(self, prefix: str = "snap") -> str:
        """A fresh empty bucket; its name."""
        name = f"{prefix}-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, under: str = "") -> dict[str, bytes]:
        """Every object in `bucket` whose key starts with `under`: key -> bytes."""
        s3 = self.client()
        found: dict[str, bytes] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under):
            for item in page.get("Contents", ()):
                found[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return found

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=body)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            env.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.delenv(name, raising=False)
        yield S3Server(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket's name on the loopback S3 server."""
    return s3_server.create_bucket()
