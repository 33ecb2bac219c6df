"""The rules of the agent task lifecycle as pure functions over TaskState (docs/architecture.md, Lifecycle
of a message).

TaskState is a lease, not a flag: every status change is a conditional write on `version` (see
store/task_state.py); liveness is decided by heartbeat age, never by guesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum

from serverless_openclaw import start_estimate
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
    start_phase: str | None = None
    """Set by a Starting bridge: the start-up phase it is in (start_estimate.PHASES), since `phase_at`."""
    phase_at: float | None = None
    recent_starts: tuple[dict[str, float], ...] = ()
    """The user's last few starts, seconds per phase, oldest first: what the next start's ETA is made of."""


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
    "startPhase",
    "phaseAt",
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
    state: TaskState,
    now: float,
    cfg: LifecycleConfig,
    idle_timeout_minutes: int,
    *,
    in_warm_window: bool = False,
) -> Verdict:
    """The safety net's decision for one TaskState row; inside a warm window idleness stops nothing."""
    if start_overdue(state, now, cfg):
        return Verdict.RESET_FAILED_START
    if state.status is Status.RUNNING and not heartbeat_fresh(state, now, cfg):
        return Verdict.RESET_STALE
    if stopping_overdue(state, now, cfg):
        return Verdict.RESET_STUCK_STOPPING
    if in_warm_window:
        # Inside one of the user's warm windows the agent stays up, however it was woken.
        return Verdict.KEEP
    if state.warm_since is not None:
        # Woken without a message: only the short warm timeout applies (its lastActivity may be old).
        return Verdict.STOP_WARM if warm_expired(state, now, cfg) else Verdict.KEEP
    if idle_expired(state, now, idle_timeout_minutes):
        return Verdict.STOP_IDLE
    return Verdict.KEEP


def may_restart_automatically(state: TaskState, cfg: LifecycleConfig) -> bool:
    """Automatic restarts (not those a user asks for) stop after max_start_attempts consecutive failures."""
    return state.start_attempts < cfg.max_start_attempts


def expected_start(state: TaskState, cfg: LifecycleConfig) -> start_estimate.StartEstimate:
    """How long this user's next (or current) start should take, from their own recent starts."""
    return start_estimate.estimate(state.recent_starts, cfg.start_eta_seconds)


def start_phase(state: TaskState) -> str:
    """The start-up phase a Starting row is in: the bridge's own word once it runs, `pulling` once ECS said
    the image pull began (task_events), else provisioning."""
    if state.start_phase is not None and state.start_phase in start_estimate.PHASES:
        return state.start_phase
    # A bridge of an earlier version says nothing; once it registers its agent token it is nearly done.
    return "booting" if state.heartbeat_at is not None else "provisioning"


def client_status(state: TaskState, now: float, cfg: LifecycleConfig) -> tuple[str, str | None, int | None]:
    """(status, phase, etaSeconds) to show a client; a start's ETA comes from the user's own recent starts."""
    if state.status is Status.STARTING:
        phase = start_phase(state)
        since = state.phase_at if state.start_phase == phase and state.phase_at is not None else None
        since = since if since is not None else state.started_at
        in_phase = now - since if since is not None else 0.0
        eta = max(1, round(expected_start(state, cfg).remaining(phase, in_phase)))
        return "starting", phase, eta
    if state.status is Status.RUNNING and not heartbeat_fresh(state, now, cfg):
        return "idle", None, None
    if state.status is Status.RUNNING and state.restarting_until is not None:
        # The task is up but cannot answer until OpenClaw is back: as good as starting, for the user.
        return "starting", RESTARTING_PHASE, max(1, round(state.restarting_until - now))
    return state.status.value.lower(), None, None


def start_timing(state: TaskState, now: float, cfg: LifecycleConfig) -> tuple[int, int] | None:
    """(usual, elapsed) seconds of a start under way: how long this user's starts take, how long this one
    has taken so far; None when the agent is not starting (or only its OpenClaw restarts)."""
    if state.status is not Status.STARTING:
        return None
    elapsed = max(0.0, now - state.started_at) if state.started_at is not None else 0.0
    return round(expected_start(state, cfg).total), round(elapsed)
