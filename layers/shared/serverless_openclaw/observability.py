"""The one Logger and Metrics every function and the bridge share (Powertools).

There is no X-Ray SDK tracer: importing it builds two botocore clients (about 150 ms) on every cold
start, and this product's functions are cold on most interactions. Lambda's Active tracing still
records every invocation, its init time and its duration (docs/decisions.md).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()


def count(name: str, value: int = 1) -> None:
    """Record one business event (MessageAccepted, TaskStarted, StartFailed, …) as a metric."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
