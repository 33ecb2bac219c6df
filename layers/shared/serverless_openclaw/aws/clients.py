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
)


@functools.cache
def client(service: str, endpoint_url: str | None = None) -> Any:
    """A shared boto3 client; boto3 itself applies AWS_ENDPOINT_URL_<SERVICE> when endpoint_url is None."""
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, config=_CONFIG)


def reset() -> None:
    """Forget every client (tests start a fresh moto backend per test)."""
    client.cache_clear()
