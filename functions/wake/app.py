"""EventBridge Scheduler target: wakes one user's agent (`{"userId", "reason"}`, reasons in wake.py)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import count, logger, metrics
from serverless_openclaw.wake import InvalidWake, parse_event, wake

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Wake the agent the schedule names; a malformed event is refused, not retried."""
    try:
        parsed = parse_event(event)
    except InvalidWake as exc:
        # Retrying cannot mend the event: say what is wrong (the event holds no secret) and stop.
        logger.error("wake event refused", reason=str(exc))
        count("WakeRefused")
        return {"result": "refused", "error": str(exc)}
    return wake(plane, parsed).as_dict()
