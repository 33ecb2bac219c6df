"""HTTP API (`/api/*`, Cognito JWT authorizer): conversations, settings, agent control, Telegram links."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.api import agent, conversations, errors, request, settings, telegram
from serverless_openclaw.aws.scheduler import WakeSchedules
from serverless_openclaw.config import ControlPlaneConfig, WakeSchedulesConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config, schedules=WakeSchedules(WakeSchedulesConfig.from_env()))

# CORS is answered by API Gateway (the template's CorsConfiguration), so the resolver has none.
app = APIGatewayHttpResolver()
app.use(middlewares=[request.guard])
errors.register(app)
app.include_router(conversations.router, prefix="/api")
app.include_router(settings.router, prefix="/api")
app.include_router(agent.router, prefix="/api")
app.include_router(telegram.router, prefix="/api")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Route one HTTP API request (payload format 2.0)."""
    request.provide_plane(app, plane)
    return app.resolve(event, context)
