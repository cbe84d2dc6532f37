"""An S3-compatible server for tests: moto's server mode on 127.0.0.1, started by the test itself.

`s3_server(monkeypatch)` (a context manager) sets dummy AWS credentials and cuts the AWS chain
off from anything on the host (no shared config or credentials file, no instance metadata), and
refuses every socket connection or name lookup that is not loopback while it runs: no request of
a test can reach a cloud endpoint, whatever a setting says.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from facesearch.config import is_loopback_host
from facesearch.store.blobs import s3_client

REGION = "us-east-1"


class LeftLoopback(AssertionError):
    """A test tried to reach something other than this machine."""


def _host_of(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)  # a Unix socket path


def _guard_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(sock: socket.socket, address: Any) -> bool:
        return sock.family == socket.AF_UNIX or is_loopback_host(_host_of(address))

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            raise LeftLoopback(f"a test tried to connect to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            raise LeftLoopback(f"a test tried to connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not is_loopback_host(
            host.decode() if isinstance(host, bytes) else str(host)
        ):
            raise LeftLoopback(f"a test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    #: a client for the test's own look at the bucket (what the bucket operator sees)
    client: Any

    def new_bucket(self, name: str = "fs") -> str:
        bucket = f"{name}-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of the bucket, downloaded: key -> bytes."""
        found: dict[str, bytes] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", ()):
                body = self.client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
                found[item["Key"]] = body.read()
        return found

    def settings(self, bucket: str, **more: object) -> dict[str, object]:
        """Settings overrides for a deployment whose blobs live in `bucket`."""
        return {
            "blob_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint,
            "s3_region": REGION,
            **more,
        }


@contextmanager
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with the environment of a test that cannot
    leave the machine. Stopped on exit."""
    from moto.server import ThreadedMotoServer

    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _guard_sockets(monkeypatch)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        yield S3Server(endpoint, s3_client(endpoint_url=endpoint, region=REGION))
    finally:
        server.stop()
