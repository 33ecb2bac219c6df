"""The EventBridge part of the local stack: the events it delivers, the patterns that route them, and the
schedules that run functions."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from local.functions import FunctionError, FunctionHost
from local.resolve import ACCOUNT, REGION
from local.template import TemplateError


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


def schedule_seconds(expression: str) -> float:
    """Seconds between runs of an EventBridge `rate(...)` schedule."""
    found = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", expression.strip())
    if not found:
        raise TemplateError(f"the local stack runs rate() schedules only, not {expression!r}")
    unit = found.group(2).rstrip("s")
    return int(found.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[unit]


class Schedules:
    """The functions' `Schedule` events, run as EventBridge would: a "Scheduled Event" at each rate."""

    def __init__(
        self,
        functions: FunctionHost,
        stack_name: str,
        *,
        every: float | None,
        on_failure: Callable[[FunctionError], None],
    ) -> None:
        self.functions = functions
        self.stack_name = stack_name
        self.every = every
        """Run every schedule this often instead of its rate (`--schedule-every`)."""
        self.on_failure = on_failure

    def start(self) -> list[asyncio.Task[None]]:
        """One task per enabled schedule, running its function at its rate until cancelled."""
        running = []
        for logical_id, fn in self.functions.functions.items():
            for event_id, event in fn.definition.events.items():
                properties = event.get("Properties") or {}
                if event.get("Type") != "Schedule" or properties.get("Enabled") is False:
                    continue
                every = self.every or schedule_seconds(str(properties.get("Schedule")))
                running.append(
                    asyncio.create_task(
                        self._repeat(logical_id, event_id, every), name=f"schedule-{logical_id}"
                    )
                )
        return running

    async def _repeat(self, logical_id: str, event_id: str, every: float) -> None:
        rule = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.stack_name}-{logical_id}{event_id}"
        while True:
            await asyncio.sleep(every)
            await self.run(logical_id, rule)

    async def run(self, logical_id: str, rule: str | None = None) -> Any:
        """Invoke a scheduled function now with a "Scheduled Event"; None when it failed."""
        rule = rule or f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{logical_id}"
        event = eventbridge_event("Scheduled Event", "aws.events", [rule], {})
        try:
            return await self.functions.ainvoke(logical_id, event)
        except FunctionError as exc:
            self.on_failure(exc)
            return None
