"""Waking a user's agent on a schedule (EventBridge Scheduler → the wake function): the event, the reasons
it may carry, and the start, made exactly as a message would make it (routing.start_agent).

The event is `{"userId": "...", "reason": "window"}`; every schedule names its reason, and a reason names
its own check that the wake is still wanted (a schedule left behind by a failed delete must not start an
agent nobody asked for).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serverless_openclaw import lifecycle, protocol, warm_windows
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import MessageAction
from serverless_openclaw.observability import count, logger
from serverless_openclaw.routing import StartOutcome, start_agent

WINDOW = "window"
"""A warm window opens (warm_windows.py)."""
REASONS = (WINDOW,)
"""Every reason a wake event may carry."""


class InvalidWake(ValueError):
    """A wake event that is not `{"userId": <identifier>, "reason": <one of REASONS>}`."""


@dataclass(frozen=True, slots=True)
class WakeEvent:
    """Whose agent to wake, and why."""

    user_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class WakeResult:
    """What a wake did: `result` is started, already (an agent is there or on its way), not_due or failed;
    `outcome` is the start's, as the user's tabs see it."""

    result: str
    outcome: StartOutcome

    def as_dict(self) -> dict[str, Any]:
        """The wake function's answer (Scheduler ignores it; logs and `make invoke` show it)."""
        return {
            "result": self.result,
            "status": self.outcome.status,
            "taskArn": self.outcome.task_arn,
            "error": self.outcome.error,
        }


def parse_event(event: Any) -> WakeEvent:
    """The wake event a schedule delivers; InvalidWake saying what is wrong with it."""
    if not isinstance(event, Mapping):
        raise InvalidWake("the event must be an object with userId and reason")
    user_id, reason = event.get("userId"), event.get("reason")
    if not isinstance(user_id, str) or not protocol.is_identifier(user_id):
        raise InvalidWake("userId must be a user id (1-64 letters, digits or . _ : -)")
    if reason not in REASONS:
        raise InvalidWake("reason must be one of " + ", ".join(REASONS))
    return WakeEvent(user_id=user_id, reason=str(reason))


def wake(cp: ControlPlane, event: WakeEvent) -> WakeResult:
    """Start the user's agent unless one is running or starting, or the wake is no longer wanted."""
    now = cp.clock()
    state = cp.task_state.get(event.user_id)
    shown = lifecycle.client_status(state, now, cp.cfg.lifecycle)[0]
    if not _still_wanted(cp, event, now):
        logger.info("wake not due, ignored", user_id=event.user_id, reason=event.reason)
        count("WakeNotDue")
        return WakeResult("not_due", StartOutcome(started=False, status=shown))
    if lifecycle.action_for_message(state, now, cp.cfg.lifecycle) is not MessageAction.START:
        if state.warm_since is not None:
            # Woken by an open chat just before the window: the window keeps it now, so it must not stop
            # itself after the short warm timeout (the bridge watches `warmSince`).
            cp.task_state.touch_activity(event.user_id, now)
        return WakeResult("already", StartOutcome(started=False, status=shown))
    outcome = start_agent(cp, state, reason=event.reason)
    count("WakeStarted" if outcome.started else "WakeNotStarted")
    if outcome.error:
        return WakeResult("failed", outcome)
    return WakeResult("started" if outcome.started else "already", outcome)


def _still_wanted(cp: ControlPlane, event: WakeEvent, now: float) -> bool:
    if event.reason == WINDOW:
        windows, zone = warm_windows.for_user(cp.settings.get_all(event.user_id))
        return warm_windows.open_or_opening(windows, zone, now)
    return True
