"""Business metrics from the bridge, sent with PutMetricData (a container's stdout is not parsed as EMF)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from serverless_openclaw.observability import logger


class BridgeMetrics:
    """Buffers datapoints and sends them in batches; a failure is logged, never raised."""

    def __init__(
        self, cloudwatch: Any, namespace: str, *, service: str = "serverless-openclaw-bridge"
    ) -> None:
        self.cloudwatch = cloudwatch
        self.namespace = namespace
        self.service = service
        self._pending: list[dict[str, Any]] = []

    def count(self, name: str, value: float = 1) -> None:
        """One business event (MessageAnswered, BackupCompleted, …)."""
        self._add(name, value, "Count", {})

    def seconds(self, name: str, value: float, **dimensions: str) -> None:
        """A duration, e.g. StartupPhase with Phase=restore."""
        self._add(name, value, "Seconds", dimensions)

    def _add(self, name: str, value: float, unit: str, dimensions: dict[str, str]) -> None:
        dims = [{"Name": "service", "Value": self.service}] + [
            {"Name": k, "Value": v} for k, v in sorted(dimensions.items())
        ]
        self._pending.append(
            {"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dims, "Timestamp": time.time()}
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
