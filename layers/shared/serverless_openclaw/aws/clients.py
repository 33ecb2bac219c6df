"""boto3 clients, created once per process and lazily, honouring AWS_ENDPOINT_URL_<SERVICE>."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
    # The bridge restores and backs up with 16 parallel transfers on one shared S3 client.
    max_pool_connections=32,
)


@functools.cache
def _session() -> Any:
    # One session for every client: its loader parses the endpoint and partition data once, not per client.
    return boto3.session.Session()


@functools.cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A shared boto3 client; boto3 itself applies AWS_ENDPOINT_URL_<SERVICE> when endpoint_url is None."""
    return _session().client(service, endpoint_url=endpoint_url, config=_CONFIG)


def reset() -> None:
    """Forget every client and the session (tests start a fresh moto backend per test)."""
    client.cache_clear()
    _session.cache_clear()
