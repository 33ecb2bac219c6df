"""boto3 clients, created once per process and lazily, honouring AWS_ENDPOINT_URL_<SERVICE>."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal, overload

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    # Type stubs (boto3-stubs, a dev dependency): read by mypy only, never imported by the layer.
    from botocore.client import BaseClient
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_scheduler import EventBridgeSchedulerClient
    from mypy_boto3_ssm import SSMClient

Service = Literal["apigatewaymanagementapi", "cloudwatch", "dynamodb", "ecs", "s3", "scheduler", "ssm"]
"""The services the functions and the bridge call."""

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
    # The bridge restores and backs up with 16 parallel transfers on one shared S3 client.
    max_pool_connections=32,
)


@functools.cache
def _session() -> boto3.session.Session:
    # One session for every client: its loader parses the endpoint and partition data once, not per client.
    return boto3.session.Session()


@functools.cache
def _client(service: Service, endpoint_url: str | None) -> BaseClient:
    return _session().client(service, endpoint_url=endpoint_url, config=_CONFIG)


@overload
def client(
    service: Literal["apigatewaymanagementapi"], endpoint_url: str | None = None
) -> ApiGatewayManagementApiClient: ...
@overload
def client(service: Literal["cloudwatch"], endpoint_url: str | None = None) -> CloudWatchClient: ...
@overload
def client(service: Literal["dynamodb"], endpoint_url: str | None = None) -> DynamoDBClient: ...
@overload
def client(service: Literal["ecs"], endpoint_url: str | None = None) -> ECSClient: ...
@overload
def client(service: Literal["s3"], endpoint_url: str | None = None) -> S3Client: ...
@overload
def client(service: Literal["ssm"], endpoint_url: str | None = None) -> SSMClient: ...
@overload
def client(service: Literal["scheduler"], endpoint_url: str | None = None) -> EventBridgeSchedulerClient: ...


def client(service: Service, endpoint_url: str | None = None) -> BaseClient:
    """A shared boto3 client; boto3 itself applies AWS_ENDPOINT_URL_<SERVICE> when endpoint_url is None."""
    return _client(service, endpoint_url)


def forget_clients() -> None:
    """Forget every client but keep the session and the service models it parsed (tests: a new moto)."""
    _client.cache_clear()


def reset() -> None:
    """Forget every client and the session (tests start a fresh moto backend per test)."""
    forget_clients()
    _session.cache_clear()
