"""The EventBridge part of the local stack: the events it delivers and the patterns that route them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from local.resolve import ACCOUNT, REGION


def eventbridge_event(
    detail_type: str, source: str, resources: list[str], detail: dict[str, Any]
) -> dict[str, Any]:
    """An event as EventBridge hands it to a Lambda target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": resources,
        "detail": detail,
    }


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge's pattern matching for the forms the template uses (value lists, nested objects)."""
    if isinstance(pattern, dict):
        if not isinstance(event, dict):
            return False
        return all(key in event and matches(value, event[key]) for key, value in pattern.items())
    if isinstance(pattern, list):
        return any(event == allowed for allowed in pattern)
    return bool(pattern == event)
