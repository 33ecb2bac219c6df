"""The rules of the agent task lifecycle as pure functions over TaskState (docs/architecture.md, Lifecycle
of a message).

TaskState is a lease, not a flag: every status change is a conditional write on `version` (see
store/task_state.py); liveness is decided by heartbeat age, never by guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from serverless_openclaw.config import LifecycleConfig


class Status(StrEnum):
    """Where the user's agent task is."""

    IDLE = "Idle"
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"


class Capacity(StrEnum):
    """Fargate capacity provider a task runs on."""

    SPOT = "FARGATE_SPOT"
    ON_DEMAND = "FARGATE"


@dataclass(frozen=True, slots=True)
class TaskState:
    """One user's TaskState row; timestamps are epoch seconds."""

    user_id: str
    status: Status = Status.IDLE
    version: int = 0
    task_arn: str | None = None
    capacity: Capacity | None = None
    agent_connection_id: str | None = None
    agent_token_hash: str | None = None
    started_at: float | None = None
    heartbeat_at: float | None = None
    last_activity: float | None = None
    changed_at: float | None = None
    busy: bool = False
    start_attempts: int = 0
    last_error: str | None = None
    restarting_until: float | None = None
    """Set by a Running bridge while its OpenClaw gateway restarts: when it expects it back."""
    warm_since: float | None = None
    """Set when the task was started by a `warm` frame (someone about to type) rather than a message;
    cleared by the user's next message. While set, the short warm idle timeout applies."""


RESTARTING_PHASE = "restarting"
"""The phase a Running agent's clients are shown while its OpenClaw gateway restarts."""

LIVE_TASK_ATTRIBUTES = (
    "taskArn",
    "agentConnectionId",
    "agentTokenHash",
    "heartbeatAt",
    "busy",
    "restartingUntil",
    "warmSince",
)
"""TaskState attributes that describe a live task and go when it stops or is declared dead."""


class MessageAction(Enum):
    """What to do with the agent after a user message is safely queued."""

    NUDGE = "nudge"
    WAIT = "wait"
    START = "start"


class Verdict(Enum):
    """What the watchdog should do about one TaskState."""

    KEEP = "keep"
    STOP_IDLE = "stop_idle"
    STOP_WARM = "stop_warm"
    RESET_FAILED_START = "reset_failed_start"
    RESET_STALE = "reset_stale"
    RESET_STUCK_STOPPING = "reset_stuck_stopping"


def heartbeat_fresh(state: TaskState, now: float, cfg: LifecycleConfig) -> bool:
    """True while the bridge has reported within the stale threshold."""
    return state.heartbeat_at is not None and now - state.heartbeat_at <= cfg.heartbeat_stale_seconds


def start_overdue(state: TaskState, now: float, cfg: LifecycleConfig) -> bool:
    """A Starting task that has not heartbeated before the start deadline has failed to start."""
    if state.status is not Status.STARTING or heartbeat_fresh(state, now, cfg):
        return False
    since = state.started_at if state.started_at is not None else state.changed_at
    return since is None or now - since > cfg.start_deadline_seconds


def action_for_message(state: TaskState, now: float, cfg: LifecycleConfig) -> MessageAction:
    """Decide, after a message is queued, whether to nudge a live agent, wait for one, or start one."""
    if state.status is Status.RUNNING:
        if not heartbeat_fresh(state, now, cfg):
            return MessageAction.START
        # Without an agent connection the bridge is between reconnects; it drains when it comes back.
        return MessageAction.NUDGE if state.agent_connection_id else MessageAction.WAIT
    if state.status is Status.STARTING:
        return MessageAction.START if start_overdue(state, now, cfg) else MessageAction.WAIT
    if state.status is Status.STOPPING:
        # The STOPPED event restarts a task for the queued message; a stuck Stopping is the watchdog's.
        return MessageAction.START if stopping_overdue(state, now, cfg) else MessageAction.WAIT
    return MessageAction.START


def stopping_overdue(state: TaskState, now: float, cfg: LifecycleConfig) -> bool:
    """A Stopping task whose STOPPED event never came within the deadline."""
    if state.status is not Status.STOPPING:
        return False
    # A row with no time to count from (another version's, or one edited by hand) has waited long enough:
    # otherwise it would wait for ever, and its user's messages with it.
    since = state.changed_at if state.changed_at is not None else state.started_at
    return since is None or now - since > cfg.stopping_deadline_seconds


def warm_expired(state: TaskState, now: float, cfg: LifecycleConfig) -> bool:
    """A Running agent woken without a message (`warmSince`) that has had none for the warm idle timeout,
    counted from when it became Running (`changedAt`): the person who opened the chat did not write."""
    if state.status is not Status.RUNNING or state.busy or state.warm_since is None:
        return False
    since = max(t for t in (state.warm_since, state.changed_at, state.last_activity) if t is not None)
    return now - since > cfg.warm_idle_timeout_minutes * 60


def idle_expired(state: TaskState, now: float, idle_timeout_minutes: int) -> bool:
    """A Running agent, not busy, quiet for longer than the user's idle timeout."""
    if state.status is not Status.RUNNING or state.busy:
        return False
    last = state.last_activity if state.last_activity is not None else state.started_at
    return last is not None and now - last > idle_timeout_minutes * 60


def watchdog_verdict(
    state: TaskState, now: float, cfg: LifecycleConfig, idle_timeout_minutes: int
) -> Verdict:
    """The safety net's decision for one TaskState row."""
    if start_overdue(state, now, cfg):
        return Verdict.RESET_FAILED_START
    if state.status is Status.RUNNING and not heartbeat_fresh(state, now, cfg):
        return Verdict.RESET_STALE
    if stopping_overdue(state, now, cfg):
        return Verdict.RESET_STUCK_STOPPING
    if state.warm_since is not None:
        # Woken without a message: only the short warm timeout applies (its lastActivity may be old).
        return Verdict.STOP_WARM if warm_expired(state, now, cfg) else Verdict.KEEP
    if idle_expired(state, now, idle_timeout_minutes):
        return Verdict.STOP_IDLE
    return Verdict.KEEP


def may_restart_automatically(state: TaskState, cfg: LifecycleConfig) -> bool:
    """Automatic restarts (not those a user asks for) stop after max_start_attempts consecutive failures."""
    return state.start_attempts < cfg.max_start_attempts


def client_status(state: TaskState, now: float, cfg: LifecycleConfig) -> tuple[str, str | None, int | None]:
    """(status, phase, etaSeconds) to show a client."""
    if state.status is Status.STARTING:
        elapsed = now - state.started_at if state.started_at is not None else 0.0
        eta = max(1, round(cfg.start_eta_seconds - elapsed))
        phase = "booting" if state.heartbeat_at is not None else "provisioning"
        return "starting", phase, eta
    if state.status is Status.RUNNING and not heartbeat_fresh(state, now, cfg):
        return "idle", None, None
    if state.status is Status.RUNNING and state.restarting_until is not None:
        # The task is up but cannot answer until OpenClaw is back: as good as starting, for the user.
        return "starting", RESTARTING_PHASE, max(1, round(state.restarting_until - now))
    return state.status.value.lower(), None, None
