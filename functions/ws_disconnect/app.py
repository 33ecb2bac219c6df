"""WebSocket `$disconnect` route: forgets the connection (and a bridge's agent link if it is current)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.disconnect import close_connection
from serverless_openclaw.observability import logger, metrics

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # $disconnect is best effort in API Gateway and its answer is ignored; rows also expire by TTL.
    close_connection(plane, str(event.get("requestContext", {}).get("connectionId") or ""))
    return {"statusCode": 200}
