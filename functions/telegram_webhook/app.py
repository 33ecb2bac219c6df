"""HTTP API `POST /telegram` (no JWT: Telegram's secret-token header is checked instead): the Telegram bot."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics
from serverless_openclaw.telegram_bot import TelegramBot

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)
bot = TelegramBot.from_plane(plane)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One update from Telegram (payload format 2.0); an exception means 500, and Telegram redelivers."""
    headers, encoded = event.get("headers") or {}, bool(event.get("isBase64Encoded"))
    status, body = bot.handle(headers, event.get("body"), encoded)
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, separators=(",", ":")),
    }
