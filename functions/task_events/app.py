"""EventBridge "ECS Task State Change" of our cluster: STOPPED releases the lease, counts failures, retries;
PENDING/ACTIVATING/RUNNING with `pullStartedAt` moves a start on to `pulling`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from serverless_openclaw.config import ControlPlaneConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.observability import logger, metrics
from serverless_openclaw.task_events import PULL_STATUSES, is_our_cluster, on_task_pulling, on_task_stopped

config = ControlPlaneConfig.from_env()
plane = ControlPlane.from_config(config)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail = event.get("detail")
    if (
        event.get("detail-type") != "ECS Task State Change"
        or not isinstance(detail, dict)
        or detail.get("lastStatus") not in ("STOPPED", *PULL_STATUSES)
        or not is_our_cluster(detail.get("clusterArn"), config.launch.cluster)
    ):
        # The rules already filter on these; anything else reaching us is not ours to act on.
        logger.info("event ignored", detail_type=event.get("detail-type"))
        return {"ignored": True}
    if detail.get("lastStatus") == "STOPPED":
        return {"ignored": False, **asdict(on_task_stopped(plane, detail))}
    return {"ignored": False, **asdict(on_task_pulling(plane, detail))}
