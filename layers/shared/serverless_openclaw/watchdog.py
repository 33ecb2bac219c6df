"""The safety net, run every few minutes: stop idle agents, reap dead ones, start or give up on queued work.

ECS STOPPED events (task_events.py) settle most rows at once; the watchdog catches whatever they miss.
Every rule is independent and every row is handled on its own: one bad row is logged and skipped,
never the end of the sweep.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from serverless_openclaw import lifecycle, routing
from serverless_openclaw import settings as user_settings
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState, Verdict
from serverless_openclaw.observability import count, logger
from serverless_openclaw.task_events import serve_queued, task_user_id

_METRICS = {
    "stop_idle": "WatchdogStopIdle",
    "stop_warm": "WatchdogStopWarm",
    "failed_start": "WatchdogFailedStart",
    "stale_reset": "WatchdogStaleReset",
    "stuck_stopping": "WatchdogStuckStopping",
    "orphan_stopped": "WatchdogOrphanStopped",
    "start_queued": "WatchdogStartQueued",
    "gave_up": "WatchdogGaveUp",
}


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the watchdog did, and why."""

    user_id: str | None
    task_arn: str | None
    action: str
    reason: str


def sweep(cp: ControlPlane) -> list[Action]:
    """One pass of every rule over every user; returns what was done."""
    actions: list[Action] = []
    stopped: set[str] = set()
    rows = _read_rows(cp)
    for state in rows or []:
        try:
            decided = _check_row(cp, state)
            if decided is None:
                continue
            action, task_stopped = decided
            _record(actions, action)
            if task_stopped:
                stopped.add(task_stopped)
        except Exception:  # one bad row never ends the sweep
            logger.exception("watchdog row failed", user_id=state.user_id, task_arn=state.task_arn)
    if rows is not None:
        _stop_orphans(cp, stopped, actions)
    _serve_queued(cp, actions)
    return actions


def _record(actions: list[Action], action: Action) -> None:
    actions.append(action)
    count(_METRICS[action.action])
    logger.info(
        "watchdog action",
        user_id=action.user_id,
        task_arn=action.task_arn,
        action=action.action,
        reason=action.reason,
    )


def _read_rows(cp: ControlPlane) -> list[TaskState] | None:
    """Every TaskState row that parses; None when the table could not be read at all."""
    try:
        return list(cp.task_state.scan_states(_skip_malformed))
    except Exception:
        logger.exception("watchdog could not read TaskState")
        return None


def _skip_malformed(item: Mapping[str, Any]) -> None:
    logger.exception("malformed TaskState row skipped", pk=str(item.get("PK", "")))


def _idle_timeout(cp: ControlPlane, state: TaskState) -> int:
    default = cp.cfg.lifecycle.idle_timeout_minutes
    if state.status is not Status.RUNNING or state.busy:
        return default  # only a quiet Running agent is ever judged on its idle timeout
    return user_settings.idle_timeout_for(cp.settings.get_all(state.user_id), default)


def _check_row(cp: ControlPlane, state: TaskState) -> tuple[Action, str | None] | None:
    """Apply the per-row rules; returns the action taken and the task it stopped, or None."""
    now = cp.clock()
    cfg = cp.cfg.lifecycle
    verdict = lifecycle.watchdog_verdict(state, now, cfg, _idle_timeout(cp, state))
    user_id = state.user_id
    if verdict is Verdict.KEEP:
        return None
    if verdict is Verdict.STOP_IDLE:
        if routing.stop_agent(cp, state, "idle timeout") is None:
            return _lost_race(state, verdict)
        return Action(user_id, state.task_arn, "stop_idle", "idle timeout"), state.task_arn
    if verdict is Verdict.STOP_WARM:
        # Normally the bridge stops itself first; this is the net for one that did not.
        if routing.stop_unused_warm(cp, state) is None:
            return _lost_race(state, verdict)
        return Action(user_id, state.task_arn, "stop_warm", "woken without a message"), state.task_arn
    if verdict is Verdict.RESET_FAILED_START:
        why = f"it did not come up within {cfg.start_deadline_seconds} seconds"
        if routing.record_failed_start(cp, state, why) is None:
            return _lost_race(state, verdict)
        action = Action(user_id, state.task_arn, "failed_start", "start deadline passed")
    else:  # RESET_STALE or RESET_STUCK_STOPPING: back to Idle at once
        if routing.settle_idle(cp, state) is None:
            return _lost_race(state, verdict)
        if verdict is Verdict.RESET_STUCK_STOPPING:
            # A task that is somehow still alive is an orphan from now on.
            return Action(
                user_id, state.task_arn, "stuck_stopping", "no STOPPED event before the deadline"
            ), None
        action = Action(user_id, state.task_arn, "stale_reset", "heartbeat stale")
    if state.task_arn:
        routing.stop_task(cp, state.task_arn, action.reason)
    return action, state.task_arn


def _lost_race(state: TaskState, verdict: Verdict) -> tuple[Action, str | None] | None:
    # Somebody changed the row since the scan (a message, an event, the bridge): next sweep re-judges it.
    logger.info("watchdog lost the race, skipping", user_id=state.user_id, verdict=verdict.value)
    return None


def _stop_orphans(cp: ControlPlane, already_stopped: set[str], actions: list[Action]) -> None:
    """Stop live tasks of our family that no TaskState row references."""
    try:
        orphans = _find_orphans(cp, already_stopped)
    except Exception:
        logger.exception("watchdog orphan check failed")
        return
    for arn in orphans:
        try:
            cp.launcher.stop(arn, "orphan")
        except Exception:
            logger.exception("orphan stop failed", task_arn=arn)
            continue
        _record(actions, Action(None, arn, "orphan_stopped", "orphan"))


def _find_orphans(cp: ControlPlane, already_stopped: set[str]) -> list[str]:
    """Live tasks no row references, less any a start in flight may own; none if the rows are unreadable."""
    # Listed before the rows are re-read: a task launched after this list is not judged at all.
    live = cp.launcher.running_tasks()
    rows = _read_rows(cp)
    if rows is None:
        return []
    referenced = {s.task_arn for s in rows if s.task_arn}
    candidates = [arn for arn in live if arn not in referenced and arn not in already_stopped]
    # A start between RunTask and recording its ARN looks like an orphan: spare that user's tasks.
    launching = {s.user_id for s in rows if s.status is Status.STARTING and not s.task_arn}
    return _spare_launching(cp, candidates, launching)


def _spare_launching(cp: ControlPlane, candidates: list[str], launching: set[str]) -> list[str]:
    """The candidates less the tasks of users whose start is in flight (and any whose user is unknown)."""
    if not candidates or not launching:
        return candidates
    spared = {
        str(task.get("taskArn"))
        for task in cp.launcher.describe(candidates)
        if task_user_id(task) in launching or task_user_id(task) is None
    }
    return [arn for arn in candidates if arn not in spared]


def _serve_queued(cp: ControlPlane, actions: list[Action]) -> None:
    """Users with waiting messages and no agent: start one (bounded) or fail the messages visibly."""
    try:
        users = list(cp.inbox.users_with_pending(cp.clock()))
    except Exception:
        logger.exception("watchdog could not read the Inbox")
        return
    for user_id in users:
        try:
            state = cp.task_state.get(user_id)
            result = serve_queued(cp, state, reason="queued messages")
        except Exception:
            logger.exception("watchdog queued check failed", user_id=user_id)
            continue
        if result.result == "started":
            _record(actions, Action(user_id, result.task_arn, "start_queued", "queued messages"))
        elif result.result == "start_failed":
            _record(
                actions,
                Action(user_id, None, "start_queued", f"queued messages; start failed: {result.error}"),
            )
        elif result.result == "gave_up":
            _record(
                actions,
                Action(user_id, None, "gave_up", f"start attempts exhausted (last error: {result.error})"),
            )
