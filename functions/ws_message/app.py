"""WebSocket `$default` route: sendMessage, getStatus, stop, ping from browsers; heartbeat from bridges."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics
from serverless_openclaw.websocket import ConnectionCache, handle_frame

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)
connections = ConnectionCache()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    connection_id = event["requestContext"]["connectionId"]
    body = event.get("body")
    if event.get("isBase64Encoded"):
        body = None  # the protocol is JSON text frames only; a binary frame is refused like garbage
    reply = handle_frame(plane, connections, connection_id, body)
    return {"statusCode": 200, "body": json.dumps(reply, separators=(",", ":"), ensure_ascii=False)}
