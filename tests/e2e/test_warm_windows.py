"""Warm windows end to end through the local stack: the settings write a schedule, the local EventBridge
Scheduler fires it at the window's start (its clock moved forward, not waited for), the wake function
starts the agent, and the watchdog keeps it through idleness inside the window only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.harness import REPO, LocalStackProcess, until, user_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

StartStack = Callable[..., LocalStackProcess]
ZONE = "Asia/Tokyo"


def _sweep(stack: LocalStackProcess) -> list[dict[str, Any]]:
    """One watchdog run, as `make invoke` does it; the actions it took."""
    done = subprocess.run(
        [sys.executable, "-m", "local", "invoke", "WatchdogFunction", "-e", "events/watchdog_schedule.json"]
        + ["--state-dir", str(stack.state_dir)],
        cwd=REPO,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    actions: list[dict[str, Any]] = json.loads(done.stdout)["actions"]
    return actions


def _backdate_activity(stack: LocalStackProcess, user_id: str, seconds: float) -> None:
    stack.client("dynamodb").update_item(
        TableName=stack.table("TASK_STATE_TABLE"),
        Key={"PK": {"S": f"USER#{user_id}"}},
        UpdateExpression="SET lastActivity = :then",
        ExpressionAttributeValues={":then": {"N": str(time.time() - seconds)}},
    )


def _scheduler(stack: LocalStackProcess, method: str, path: str = "/", **kwargs: Any) -> dict[str, Any]:
    response = httpx.request(method, f"{stack.endpoints['schedulerUrl']}{path}", timeout=120, **kwargs)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def test_a_warm_window_starts_the_agent_at_its_start_time_and_keeps_it_through_idleness(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    user_id, token = stack.endpoints["userId"], stack.login()

    # Given a window that opened this minute in Tokyo, every day, for two hours
    opened = datetime.now(ZoneInfo(ZONE)).replace(second=0, microsecond=0)
    window = {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": opened.strftime("%H:%M"),
        "end": (opened + timedelta(hours=2)).strftime("%H:%M"),
    }
    saved = stack.api("PUT", "/api/settings", token, json={"timezone": ZONE, "warmWindows": [window]})
    assert saved.status_code == 200, saved.text

    # Then one schedule fires at that time of day on Tokyo's clocks; today's start has passed, so tomorrow's
    tomorrow = (opened + timedelta(days=1)).astimezone(UTC)
    [schedule] = _scheduler(stack, "GET")["schedules"]
    assert schedule["timezone"] == ZONE and schedule["state"] == "ENABLED"
    assert schedule["next"] == tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert stack.task_state(user_id).get("status", "Idle") == "Idle"

    # When the Scheduler's clock reaches a second before that start, nothing has fired
    scheduler_now = datetime.strptime(_scheduler(stack, "GET")["now"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=UTC
    )
    early = (tomorrow - scheduler_now).total_seconds() - 2
    assert _scheduler(stack, "POST", "/advance", json={"seconds": early})["fired"] == []

    # And when it reaches the start, the wake function starts the agent at once
    fired = _scheduler(stack, "POST", "/advance", json={"seconds": 4})["fired"]
    assert [(f["at"], f["ok"]) for f in fired] == [(tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ"), True)]
    assert stack.task_state(user_id)["status"] in ("Starting", "Running")
    await until(lambda: stack.task_state(user_id).get("status") == "Running", 240, "the woken agent", stack)
    assert len(stack.tasks()) == 1

    # When nobody writes for an hour (past any idle timeout) while the window is open
    _backdate_activity(stack, user_id, 3600)

    # Then the watchdog keeps the agent
    assert _sweep(stack) == []
    assert stack.task_state(user_id)["status"] == "Running" and len(stack.running_tasks()) == 1

    # When the user moves to UTC, the window moves with the clocks: it is not open now
    moved = stack.api("PUT", "/api/settings", token, json={"timezone": "UTC"})
    assert moved.status_code == 200, moved.text
    assert [s["timezone"] for s in _scheduler(stack, "GET")["schedules"]] == ["UTC"]

    # Then outside the window the normal idle timeout applies: the quiet agent is stopped
    actions = _sweep(stack)
    assert [(a["user_id"], a["action"]) for a in actions] == [(user_id, "stop_idle")]
    await until(
        lambda: not stack.running_tasks() and stack.task_state(user_id).get("status") == "Idle",
        180,
        "the idle stop outside the window",
        stack,
    )
