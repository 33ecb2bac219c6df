"""EventBridge schedule (every 5 minutes): the watchdog's sweep over every user's agent."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics
from serverless_openclaw.watchdog import sweep

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    actions = sweep(plane)
    return {"actions": [asdict(action) for action in actions]}
