"""`python -m local invoke <FunctionLogicalId> -e events/<file>.json`: `sam local invoke` without Docker.

The function runs in this process with the environment the template gives it, pointed at the running
local stack (its `endpoints.json`): the same tables, bucket, user pool, ECS and `@connections` as
`make dev`. The event acts as the stack's demo user where its kind carries a user (local/impersonation.py),
and a line on stderr says whom it acts as. The handler's return value is printed as JSON on stdout, and
nothing else is: its logs and metrics go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from local.functions import FunctionError, FunctionHost
from local.impersonation import ConnectionKind, DemoUser, TelegramChat, impersonate
from local.resolve import ACCOUNT, REGION, Resolver
from local.stack import aws_environment, point_apis_at
from local.state_directory import ENDPOINTS_FILE, running_stack
from local.template import TemplateError, load_template, resources_of_type
from local.websocket_api import STAGE
from serverless_openclaw.aws.clients import client
from serverless_openclaw.aws.parameters import read_secure
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.store.telegram_links import TelegramLinkStore


class StackRecords:
    """The running stack's records of its users, read through the product's own stores, with the table
    and parameter names of the function's environment."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self.environment = environment

    def open_connection(self, user_id: str, kind: ConnectionKind) -> str | None:
        """The newest open WebSocket connection of the user, of that kind."""
        found = ConnectionStore(self.environment["CONNECTIONS_TABLE"]).for_user(user_id, kind)
        return found[-1].connection_id if found else None

    def linked_telegram(self, user_id: str) -> TelegramChat | None:
        """The Telegram account the user linked, if any."""
        link = TelegramLinkStore(self.environment["SETTINGS_TABLE"]).link_of(user_id)
        return TelegramChat(link.telegram_user_id, link.chat_id) if link else None

    def webhook_secret(self) -> str | None:
        """The secret Telegram sends with every update to the stack's webhook."""
        return read_secure(client("ssm"), self.environment["TELEGRAM_WEBHOOK_SECRET_PARAMETER"])

    def cluster_arn(self) -> str:
        """The ECS cluster the stack runs agents on."""
        cluster = self.environment["ECS_CLUSTER"]
        return cluster if cluster.startswith("arn:") else f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{cluster}"


def _endpoints(state_dir: Path) -> dict[str, Any]:
    endpoints = running_stack(state_dir)
    if endpoints is None:
        raise SystemExit(
            f"error: the local stack is not running (no live {state_dir / ENDPOINTS_FILE}); start it with "
            "`make dev` in another terminal, then invoke again"
        )
    return endpoints


@contextlib.contextmanager
def _function_output() -> Iterator[TextIO]:
    """Whatever is printed meanwhile (the function's logs and metrics) goes to stderr; the stream yielded
    is stdout, for the result alone."""
    result = sys.stdout
    sys.stdout = sys.stderr
    try:
        with warnings.catch_warnings():
            # Powertools warns whenever an invocation recorded no business metric: noise for one call.
            warnings.filterwarnings(
                "ignore", message="No application metrics to publish", category=UserWarning
            )
            yield result
    finally:
        sys.stdout = result


def _host(endpoints: dict[str, Any], state_dir: Path) -> FunctionHost:
    """The template's functions resolved as the running stack resolved them, with its environment."""
    template = load_template()
    # The same parameters, pool, client and endpoints as the running stack resolved its functions with.
    resolver = Resolver(template, endpoints["stackName"], parameter_overrides=endpoints["parameters"])
    pool = next(iter(resources_of_type(template, "AWS::Cognito::UserPool")))
    app_client = next(iter(resources_of_type(template, "AWS::Cognito::UserPoolClient")))
    resolver.physical_ids[pool] = endpoints["userPoolId"]
    resolver.physical_ids[app_client] = endpoints["userPoolClientId"]
    point_apis_at(
        resolver, endpoints["managementEndpoint"].removesuffix(f"/{STAGE}"), endpoints["httpApiUrl"]
    )
    extra = aws_environment(
        endpoints["awsEndpoint"], endpoints["ecsEndpoint"], endpoints["userPoolId"], state_dir
    )
    os.environ.update(extra)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    return FunctionHost(resolver, extra)


def invoke(logical_id: str, event_path: Path, state_dir: Path) -> int:
    """Invoke one function with one event; 0 when the handler returned, 1 when it raised."""
    try:
        event = json.loads(event_path.read_text())
    except OSError as exc:
        print(f"error: cannot read {event_path}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {event_path} is not JSON: {exc}", file=sys.stderr)
        return 2
    endpoints = _endpoints(state_dir)
    with _function_output() as result_stream:
        try:
            host = _host(endpoints, state_dir)
            records = StackRecords(host.get(logical_id).environment)
            acting = impersonate(event, DemoUser(endpoints["userId"], endpoints["username"]), records)
            print(f"invoke: {acting.said}", file=sys.stderr)
            result = host.invoke(logical_id, acting.event)
        except TemplateError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except FunctionError as exc:
            print(json.dumps({"errorType": "Unhandled", "errorMessage": exc.reason}), file=result_stream)
            return 1
    print(json.dumps(result, indent=2, default=str))
    return 0
