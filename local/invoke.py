"""`python -m local invoke <FunctionLogicalId> -e events/<file>.json`: `sam local invoke` without Docker.

The function runs in this process with the environment the template gives it, pointed at the running
local stack (its `endpoints.json`): the same tables, bucket, user pool, ECS and `@connections` as
`make dev`. The handler's return value is printed as JSON on stdout; its logs go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from local.apigateway import STAGE
from local.functions import FunctionError, FunctionHost
from local.resolve import Resolver
from local.stack import aws_environment, point_apis_at
from local.state_directory import ENDPOINTS_FILE, running_stack
from local.template import TemplateError, load_template, resources_of_type


def _endpoints(state_dir: Path) -> dict[str, Any]:
    endpoints = running_stack(state_dir)
    if endpoints is None:
        raise SystemExit(
            f"error: the local stack is not running (no live {state_dir / ENDPOINTS_FILE}); start it with "
            "`make dev` in another terminal, then invoke again"
        )
    return endpoints


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
    template = load_template()
    # The same parameters, pool, client and endpoints as the running stack resolved its functions with.
    resolver = Resolver(template, endpoints["stackName"], parameter_overrides=endpoints["parameters"])
    pool = next(iter(resources_of_type(template, "AWS::Cognito::UserPool")))
    client = next(iter(resources_of_type(template, "AWS::Cognito::UserPoolClient")))
    resolver.physical_ids[pool] = endpoints["userPoolId"]
    resolver.physical_ids[client] = endpoints["userPoolClientId"]
    point_apis_at(
        resolver, endpoints["managementEndpoint"].removesuffix(f"/{STAGE}"), endpoints["httpApiUrl"]
    )
    extra = aws_environment(
        endpoints["awsEndpoint"], endpoints["ecsEndpoint"], endpoints["userPoolId"], state_dir
    )
    os.environ.update(extra)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # the function's logs and metrics; stdout carries only the result
    try:
        host = FunctionHost(resolver, extra)
        result = host.invoke(logical_id, event)
    except TemplateError as exc:
        sys.stdout = real_stdout
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FunctionError as exc:
        sys.stdout = real_stdout
        print(json.dumps({"errorType": "Unhandled", "errorMessage": exc.reason}), file=real_stdout)
        return 1
    sys.stdout = real_stdout
    print(json.dumps(result, indent=2, default=str))
    return 0
