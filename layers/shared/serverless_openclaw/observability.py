"""The one Logger, Tracer and Metrics every function and the bridge share (Powertools)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def count(name: str, value: int = 1) -> None:
    """Record one business event (MessageAccepted, TaskStarted, StartFailed, …) as a metric."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
