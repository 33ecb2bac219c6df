"""Business metrics from the bridge, sent with PutMetricData (a container's stdout is not parsed as EMF)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from serverless_openclaw.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.literals import StandardUnitType
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef


class BridgeMetrics:
    """Buffers datapoints and sends them in batches; a failure is logged, never raised."""

    def __init__(
        self, cloudwatch: CloudWatchClient, namespace: str, *, service: str = "serverless-openclaw-bridge"
    ) -> None:
        self.cloudwatch = cloudwatch
        self.namespace = namespace
        self.service = service
        self._pending: list[MetricDatumTypeDef] = []

    def count(self, name: str, value: float = 1) -> None:
        """One business event (MessageAnswered, BackupCompleted, …)."""
        self._add(name, value, "Count", {})

    def seconds(self, name: str, value: float, **dimensions: str) -> None:
        """A duration, e.g. StartupPhase with Phase=restore."""
        self._add(name, value, "Seconds", dimensions)

    def _add(self, name: str, value: float, unit: StandardUnitType, dimensions: dict[str, str]) -> None:
        dims: list[DimensionTypeDef] = [
            {"Name": k, "Value": v} for k, v in [("service", self.service), *sorted(dimensions.items())]
        ]
        # An aware datetime, as the API model types it (botocore also takes epoch seconds: the same instant).
        now = datetime.now(UTC)
        self._pending.append(
            {"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dims, "Timestamp": now}
        )

    async def flush(self) -> None:
        """Send what is buffered (PutMetricData takes up to 1000 datapoints per call)."""
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), 1000):
            batch = pending[start : start + 1000]
            try:
                await asyncio.to_thread(
                    self.cloudwatch.put_metric_data, Namespace=self.namespace, MetricData=batch
                )
            except Exception as exc:  # metrics must never take the agent down
                logger.warning("metrics not sent", error=type(exc).__name__, datapoints=len(batch))
