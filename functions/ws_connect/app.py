"""WebSocket `$connect` route: lets in a browser with a Cognito ID token or a bridge with its task token."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.auth import JwtVerifier
from serverless_openclaw.config import AuthConfig, ControlPlaneConfig
from serverless_openclaw.connect import ConnectRequest, accept_connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics

config = ControlPlaneConfig.from_env()
auth_config = AuthConfig.from_env(os.environ)
plane = ControlPlane.from_config(config)
verifier = JwtVerifier(auth_config)

ALLOWED: dict[str, Any] = {"statusCode": 200}
# Any non-2xx answer makes API Gateway refuse the WebSocket upgrade; the body never says why.
UNAUTHORIZED: dict[str, Any] = {"statusCode": 401, "body": "Unauthorized"}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    allowed = accept_connection(plane, verifier, ConnectRequest.from_event(event))
    return dict(ALLOWED if allowed else UNAUTHORIZED)
