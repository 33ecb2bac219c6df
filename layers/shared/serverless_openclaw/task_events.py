"""ECS "Task State Change" events: STOPPED releases the user's lease at once, counts failed starts,
retries; an earlier change carrying `pullStartedAt` moves a start on to its `pulling` phase.

The STOPPED event is the fast path: ECS reports a stopped task within seconds, so the user's row is settled
at once and queued messages get a new agent. The watchdog is the safety net for events that never come.
Only the TaskState row that still references the stopped task is touched: an event for a task the row has
already let go of (superseded, reset by the watchdog) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from serverless_openclaw import lifecycle, protocol, routing, start_estimate
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status, TaskState
from serverless_openclaw.observability import count, logger
from serverless_openclaw.tasks import USER_TAG

_REASON_LENGTH = 300
_RECONCILE_TRIES = 3
_SPOT_STOP_CODES = ("SpotInterruption", "TerminationNotice")
_LAUNCH_RECORD_TRIES = 5
_LAUNCH_RECORD_WAIT_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one STOPPED event changed: `status` is what the user's clients were told (None: nothing)."""

    reconciled: bool
    user_id: str | None = None
    task_arn: str | None = None
    previous_status: str | None = None
    status: str | None = None
    failed_start: bool = False
    restarted: bool = False
    gave_up: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueuedResult:
    """What became of a user's queued messages after their agent went away."""

    result: str  # "none" | "started" | "start_failed" | "left" | "gave_up"
    task_arn: str | None = None
    failed_items: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """What one earlier-than-STOPPED change did: whether the user's start moved on to `pulling`."""

    pulling: bool
    user_id: str | None = None
    task_arn: str | None = None
    reason: str = ""


PULL_STATUSES = ("PENDING", "ACTIVATING", "RUNNING")
"""The task states whose change events may carry `pullStartedAt` (ECS sets it while PENDING)."""


def is_our_cluster(cluster_arn: str | None, cluster: str) -> bool:
    """True when an event's clusterArn names the configured cluster (given as a name or an ARN)."""
    if not cluster_arn or not cluster:
        return False
    return cluster_arn == cluster or cluster_arn.endswith("/" + cluster.rsplit("/", 1)[-1])


def task_user_id(task: Mapping[str, Any]) -> str | None:
    """The user a task runs for, from its USER_ID override (events, DescribeTasks) or its user tag."""
    overrides = task.get("overrides") or {}
    for container in overrides.get("containerOverrides") or []:
        for pair in container.get("environment") or []:
            if pair.get("name") == "USER_ID" and pair.get("value"):
                return str(pair["value"])
    for tag in task.get("tags") or []:
        if tag.get("key") == USER_TAG and tag.get("value"):
            return str(tag["value"])
    return None


def is_spot_interruption(detail: Mapping[str, Any]) -> bool:
    """ECS took the task back (Spot interruption) or had no capacity for it."""
    if detail.get("stopCode") in _SPOT_STOP_CODES:
        return True
    reason = str(detail.get("stoppedReason") or "").lower()
    return "spot" in reason or "capacity" in reason


def stop_reason(detail: Mapping[str, Any], container_name: str = "bridge") -> str:
    """A readable sentence fragment explaining why ECS stopped a task."""
    code = detail.get("stopCode") or ""
    said = " ".join(str(detail.get("stoppedReason") or "").split())[:_REASON_LENGTH]
    what = _what_stopped_it(detail, code, _exit_code(detail, container_name))
    if what is not None:
        return f"{what} ({said})" if said else what
    # A stop we have no words for: ECS's own, else its stop code.
    if said:
        return said
    return f"ECS stopped it ({code})" if code else "ECS stopped it"


def _what_stopped_it(detail: Mapping[str, Any], code: str, exit_code: int | None) -> str | None:
    """Our words for the stops we recognise; None for any other."""
    if code in _SPOT_STOP_CODES or (is_spot_interruption(detail) and not code):
        return "AWS reclaimed the Spot capacity it ran on"
    if code == "TaskFailedToStart":
        return "the task failed to start"
    if code == "EssentialContainerExited" or (exit_code is not None and not code):
        return "the agent exited" if exit_code is None else f"the agent exited with code {exit_code}"
    if code == "UserInitiated":
        return "it was stopped"
    return None


def _exit_code(detail: Mapping[str, Any], container_name: str) -> int | None:
    containers = [c for c in detail.get("containers") or [] if isinstance(c, Mapping)]
    ours = [c for c in containers if c.get("name") == container_name] or containers
    for container in ours:
        code = container.get("exitCode")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


def on_task_stopped(cp: ControlPlane, detail: Mapping[str, Any]) -> Outcome:
    """Reconcile the TaskState that references a STOPPED task, then serve or give up its queued messages."""
    task_arn = detail.get("taskArn")
    if not isinstance(task_arn, str) or not task_arn:
        logger.warning("task event without taskArn ignored")
        return Outcome(reconciled=False, reason="no task ARN")
    if detail.get("lastStatus") != "STOPPED":
        return Outcome(reconciled=False, task_arn=task_arn, reason="not stopped")
    user_id = task_user_id(detail) or _user_of_task(cp, task_arn)
    why = stop_reason(detail, cp.cfg.launch.container_name)
    _release_claims(cp, user_id, task_arn)
    for _ in range(_RECONCILE_TRIES):
        state = cp.task_state.get(user_id) if user_id else cp.task_state.find_by_task(task_arn)
        if state is None or state.task_arn != task_arn:
            logger.info("stopped task not referenced by its user's row", task_arn=task_arn, user_id=user_id)
            _serve_after_release(cp, state)
            return Outcome(reconciled=False, user_id=user_id, task_arn=task_arn, reason="not referenced")
        settled = _settle(cp, state, why)
        if settled is not None:
            return _after_settle(cp, state, settled, detail, why)
    # The row kept changing under us; the next event or the watchdog settles it.
    logger.warning("stopped task not reconciled: row kept changing", task_arn=task_arn, user_id=user_id)
    return Outcome(reconciled=False, user_id=user_id, task_arn=task_arn, reason="contention")


def _user_of_task(cp: ControlPlane, task_arn: str) -> str | None:
    """The user whose row references a task: events may lack the user (a task ECS reports lost, one
    launched without the override), and its claims must still be released at once."""
    state = cp.task_state.find_by_task(task_arn)
    return state.user_id if state is not None else None


def _release_claims(cp: ControlPlane, user_id: str | None, task_arn: str) -> None:
    """A task that is gone answers nothing: its leases go back to the queue at once (a SIGKILLed or
    crashed bridge could not release them), so the next task does not wait for them to expire."""
    if not user_id:
        return
    released = [
        item.message_id
        for item in cp.inbox.items(user_id)
        if item.status == "claimed" and item.claimed_by == task_arn and cp.inbox.release(item, task_arn)
    ]
    if released:
        logger.info(
            "claims of a stopped task released", user_id=user_id, task_arn=task_arn, items=len(released)
        )


def _serve_after_release(cp: ControlPlane, state: TaskState | None) -> None:
    """A bridge that released its row itself on SIGTERM may leave messages that arrived while it stopped."""
    if (
        state is not None
        and state.status is Status.IDLE
        and serve_queued(cp, state, reason="queued during shutdown").result == "started"
    ):
        count("TaskRestarted")


def _settle(cp: ControlPlane, state: TaskState, why: str) -> TaskState | None:
    failed_start = {"startAttempts": state.start_attempts + 1, "lastError": why[:500]}
    return cp.task_state.transition(
        state,
        Status.IDLE,
        cp.clock(),
        set_=failed_start if state.status is Status.STARTING else None,
        remove=lifecycle.LIVE_TASK_ATTRIBUTES,
    )


def _after_settle(
    cp: ControlPlane, before: TaskState, idle: TaskState, detail: Mapping[str, Any], why: str
) -> Outcome:
    user_id = before.user_id
    task_arn = before.task_arn
    failed_start = before.status is Status.STARTING
    count("TaskStopped")
    logger.info(
        "task stopped",
        user_id=user_id,
        task_arn=task_arn,
        previous_status=before.status.value,
        stop_code=detail.get("stopCode"),
        reason=why,
    )
    if failed_start:
        count("StartFailed")
        cp.pusher.to_user(
            user_id,
            protocol.error("start_failed", f"The agent could not start: {why}.", attempt=idle.start_attempts),
        )
    spot = is_spot_interruption(detail)
    prefer = Capacity.ON_DEMAND if spot else Capacity.SPOT
    trigger = "restart after spot interruption" if spot else "queued messages after stop"
    queued = serve_queued(cp, idle, reason=trigger, prefer=prefer)
    if queued.result == "started":
        count("TaskRestarted")
    elif queued.result == "gave_up":
        count("StartGaveUp")
    # start_agent tells the clients itself, whether it started ("starting") or failed ("idle").
    told = queued.result in ("started", "start_failed")
    status = "starting" if queued.result == "started" else "idle"
    if not told:
        cp.pusher.to_user(user_id, protocol.status("idle"))
    return Outcome(
        reconciled=True,
        user_id=user_id,
        task_arn=task_arn,
        previous_status=before.status.value,
        status=status,
        failed_start=failed_start,
        restarted=queued.result == "started",
        gave_up=queued.result == "gave_up",
        reason=why,
    )


def serve_queued(
    cp: ControlPlane, state: TaskState, *, reason: str, prefer: Capacity = Capacity.SPOT
) -> QueuedResult:
    """For an Idle agent with queued messages: start it (bounded), or fail the messages and say so."""
    now = cp.clock()
    if state.status is not Status.IDLE or not cp.inbox.pending(state.user_id, now):
        return QueuedResult(result="none")
    if lifecycle.may_restart_automatically(state, cp.cfg.lifecycle):
        outcome = routing.start_agent(cp, state, reason=reason, prefer=prefer)
        if outcome.started:
            return QueuedResult(result="started", task_arn=outcome.task_arn)
        if outcome.error is None:
            # Someone else moved the row first (a new message, another event): the start is theirs.
            return QueuedResult(result="left")
        state = cp.task_state.get(state.user_id)
        if state.status is not Status.IDLE or lifecycle.may_restart_automatically(state, cp.cfg.lifecycle):
            # The next sweep (or message) tries again; the attempt counter keeps this bounded.
            return QueuedResult(result="start_failed", error=outcome.error)
    return give_up(cp, state)


def give_up(cp: ControlPlane, state: TaskState) -> QueuedResult:
    """Start attempts are exhausted: mark the user's unanswered messages failed and tell them clearly."""
    now = cp.clock()
    last_error = state.last_error or "no reason was recorded"
    failed = cp.inbox.fail_pending(state.user_id, f"agent could not start: {last_error}", now)
    if not failed:
        return QueuedResult(result="none")
    n = len(failed)
    messages, it = ("message was", "it") if n == 1 else ("messages were", "them")
    logger.warning(
        "gave up starting the agent",
        user_id=state.user_id,
        attempts=state.start_attempts,
        failed_messages=n,
        last_error=last_error,
    )
    text = (
        f"Your agent could not be started after {state.start_attempts} attempts "
        f"(last error: {last_error}). {n} {messages} not answered; "
        f"please send {it} again to try once more."
    )
    cp.pusher.to_user(
        state.user_id,
        protocol.error("start_gave_up", text, failed=n, messageIds=[item.message_id for item in failed]),
    )
    targets = [target for item in failed if (target := item.telegram_target()) is not None]
    if targets and cp.telegram is not None:
        # Each Telegram message's "waking up" note becomes the bad news (never left waiting forever).
        cp.telegram.notify(targets, f"⚠️ {text}")
    return QueuedResult(result="gave_up", failed_items=n, error=last_error)


def event_time(value: object) -> float | None:
    """A task event's timestamp (ISO 8601 in events, epoch seconds from the API) as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def on_task_pulling(
    cp: ControlPlane, detail: Mapping[str, Any], sleep: Callable[[float], object] = time.sleep
) -> PullOutcome:
    """A change of a starting task that says its image pull began: the user's row moves from provisioning to
    `pulling` since `pullStartedAt` (only forward, only the task the row names), and the user is told."""
    task_arn = detail.get("taskArn")
    pulled_at = event_time(detail.get("pullStartedAt"))
    if not isinstance(task_arn, str) or not task_arn or pulled_at is None:
        return PullOutcome(pulling=False, reason="no pull started")
    user_id = task_user_id(detail) or _user_of_task(cp, task_arn)
    if user_id is None:
        return PullOutcome(pulling=False, task_arn=task_arn, reason="no user")
    if not _enter_pulling(cp, user_id, task_arn, pulled_at, sleep):
        # Another task, no longer Starting, or its bridge already said more (restoring, booting).
        return PullOutcome(pulling=False, user_id=user_id, task_arn=task_arn, reason="not provisioning")
    state = cp.task_state.get(user_id)
    cp.pusher.to_user(user_id, routing.status_frame(cp, user_id, state))
    _, _, eta = lifecycle.client_status(state, cp.clock(), cp.cfg.lifecycle)
    _tell_waiting_telegram(cp, user_id, eta or 1)
    logger.info("task image pull started", user_id=user_id, task_arn=task_arn, pull_started_at=pulled_at)
    return PullOutcome(pulling=True, user_id=user_id, task_arn=task_arn)


def _enter_pulling(
    cp: ControlPlane, user_id: str, task_arn: str, pulled_at: float, sleep: Callable[[float], object]
) -> bool:
    """Move the row to pulling; while the row is Starting but names no task yet (RunTask answered, its
    caller not yet recorded the task: an event can outrun it), wait a moment and try again."""
    for attempt in range(_LAUNCH_RECORD_TRIES):
        if cp.task_state.enter_pulling(user_id, task_arn, pulled_at):
            return True
        state = cp.task_state.get(user_id)
        if state.status is not Status.STARTING or state.task_arn is not None:
            return False
        if attempt + 1 < _LAUNCH_RECORD_TRIES:
            sleep(_LAUNCH_RECORD_WAIT_SECONDS)
    return False


def _tell_waiting_telegram(cp: ControlPlane, user_id: str, eta_seconds: int) -> None:
    """Telegram's "waking up" messages name the phase as the web tabs do (edited in place, not sent anew)."""
    if cp.telegram is None:
        return
    targets = [
        target
        for item in cp.inbox.pending(user_id, cp.clock())
        if (target := item.telegram_target()) is not None and target[1] is not None
    ]
    if targets:
        cp.telegram.notify(targets, start_estimate.waiting_text("pulling", eta_seconds))
