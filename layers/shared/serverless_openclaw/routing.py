"""What happens to a user message and to explicit start/stop requests: the first step of a message's
lifecycle, up to the agent being nudged or started (docs/architecture.md, Lifecycle of a message).

The message is stored first (store/intake.py); only then is the agent nudged, waited for or started.
Whatever fails after that point, the message stays queued for the next task: it is never lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from serverless_openclaw import lifecycle, protocol
from serverless_openclaw import settings as user_settings
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, MessageAction, Status, TaskState
from serverless_openclaw.messages import Accepted, IncomingMessage
from serverless_openclaw.observability import count, logger
from serverless_openclaw.tasks import StartError

# A new start forgets the previous task (busy is set, not removed: one expression may not do both).
_CLEARED_ON_START = (*(a for a in lifecycle.LIVE_TASK_ATTRIBUTES if a != "busy"), "capacity", "lastError")
# A start by a `warm` frame sets warmSince instead of removing it.
_CLEARED_ON_WARM_START = tuple(a for a in _CLEARED_ON_START if a != "warmSince")


@dataclass(frozen=True, slots=True)
class StartOutcome:
    """Result of trying to start an agent: `status` is what the user should now see."""

    started: bool
    status: str
    task_arn: str | None = None
    error: str | None = None


def accept_message(cp: ControlPlane, message: IncomingMessage) -> tuple[Accepted, str]:
    """Store a user message, then make sure an agent will answer it; returns where it went and the status.

    Raises only when the message could not be stored (then nothing was written and the sender retries).
    """
    now = cp.clock()
    accepted = cp.intake.accept(message, now)
    if not accepted.duplicate:
        count("MessageAccepted")
    try:
        # A duplicate still ensures an agent: the first attempt may have died right after storing.
        state = cp.task_state.touch_activity(message.user_id, now)
        return accepted, ensure_agent(cp, state)
    except Exception:
        # The message is queued; the watchdog starts an agent for queued messages within minutes.
        logger.exception("agent could not be reached or started", user_id=message.user_id)
        return accepted, "queued"


def ensure_agent(cp: ControlPlane, state: TaskState) -> str:
    """Nudge a live agent, wait for a starting one, or start one; returns the client-visible status."""
    now = cp.clock()
    action = lifecycle.action_for_message(state, now, cp.cfg.lifecycle)
    if action is MessageAction.NUDGE and state.agent_connection_id:
        if not cp.pusher.send(state.agent_connection_id, protocol.nudge()):
            # The agent connection is gone; the bridge reconnects and drains the Inbox when it is back.
            cp.task_state.detach_agent(state.user_id, state.agent_connection_id)
        # "running", or "starting" while its OpenClaw restarts (the ack must not hide that from the tab).
        return lifecycle.client_status(state, now, cp.cfg.lifecycle)[0]
    if action is MessageAction.WAIT:
        return lifecycle.client_status(state, now, cp.cfg.lifecycle)[0]
    return start_agent(cp, state, reason="message").status


@dataclass(frozen=True, slots=True)
class WakeOutcome:
    """What a `warm` frame (or Telegram's /start, /wake) did: `wake` is started (this one started the
    agent), awake (it was already starting, running or stopping: nothing done), off (the user turned
    wake on intent off), held (its last starts failed: the next message tries again) or failed (the
    start failed: `error` says why); `status` is the `status` frame the user should now see."""

    wake: str
    status: dict[str, object]
    error: str | None = None


def wake_on_intent(cp: ControlPlane, user_id: str) -> WakeOutcome:
    """Someone is about to talk to their agent: start it exactly as a message would, marked as woken
    without one (`warmSince`: the short warm idle timeout applies until a message comes).

    Reads before it writes: an agent already up (the usual case, a frame per focus) costs one read.
    """
    state = cp.task_state.get(user_id)
    cfg = cp.cfg.lifecycle
    if lifecycle.action_for_message(state, cp.clock(), cfg) is not MessageAction.START:
        return WakeOutcome("awake", status_frame(cp, user_id, state))
    if not user_settings.wake_on_intent_for(cp.settings.get(user_id, user_settings.WAKE_ON_INTENT)):
        return WakeOutcome("off", status_frame(cp, user_id, state))
    if not lifecycle.may_restart_automatically(state, cfg):
        # Starts that keep failing cost money and errors; a focus is no reason to try again, a message is.
        return WakeOutcome("held", status_frame(cp, user_id, state), state.last_error)
    outcome = start_agent(cp, state, reason="warm", warm=True)
    if outcome.started:
        count("AgentWarmed")
        return WakeOutcome("started", _starting_frame(cp))
    if outcome.error is not None or outcome.status == "idle":
        return WakeOutcome("failed", protocol.status("idle"), outcome.error)
    return WakeOutcome("awake", status_frame(cp, user_id))  # a concurrent frame or message won the start


def _starting_frame(cp: ControlPlane) -> dict[str, object]:
    return protocol.status("starting", phase="provisioning", eta_seconds=cp.cfg.lifecycle.start_eta_seconds)


def start_agent(
    cp: ControlPlane,
    state: TaskState,
    *,
    reason: str,
    prefer: Capacity = Capacity.SPOT,
    warm: bool = False,
) -> StartOutcome:
    """Idle (or dead) → Starting with one conditional write, then RunTask; exactly one task per user.

    `warm`: started by someone about to talk rather than by a message (recorded as `warmSince`).
    """
    now = cp.clock()
    set_: dict[str, object] = {"startedAt": now, "busy": False}
    if warm:
        set_["warmSince"] = now
    starting = cp.task_state.transition(
        state,
        Status.STARTING,
        now,
        set_=set_,
        remove=_CLEARED_ON_WARM_START if warm else _CLEARED_ON_START,
    )
    if starting is None:
        # Somebody else changed the row first (a concurrent message, the watchdog): they own the start.
        current = cp.task_state.get(state.user_id)
        logger.info("start lost the race", user_id=state.user_id, status=current.status.value)
        return StartOutcome(started=False, status=lifecycle.client_status(current, now, cp.cfg.lifecycle)[0])
    if state.task_arn and state.status is not Status.IDLE:
        # The row pointed at a task we just declared dead: make sure it does not linger.
        stop_task(cp, state.task_arn, f"replaced ({reason})")
    try:
        launched = cp.launcher.launch(state.user_id, str(starting.version), prefer)
    except Exception as exc:  # every failure is recorded and told, never swallowed
        text = exc.reason if isinstance(exc, StartError) else f"unexpected error ({type(exc).__name__})"
        logger.exception("agent start failed", user_id=state.user_id, reason=text, trigger=reason)
        record_failed_start(cp, starting, text)
        return StartOutcome(started=False, status="idle", error=text)
    if not cp.task_state.record_launch(starting, launched.task_arn, launched.capacity):
        logger.warning(
            "start superseded, stopping the new task", user_id=state.user_id, task_arn=launched.task_arn
        )
        stop_task(cp, launched.task_arn, "superseded")
        return StartOutcome(started=False, status="idle")
    count("TaskStarted")
    if launched.capacity is Capacity.ON_DEMAND and prefer is Capacity.SPOT:
        count("SpotFallback")
    logger.info(
        "agent starting",
        user_id=state.user_id,
        task_arn=launched.task_arn,
        capacity=launched.capacity.value,
        trigger=reason,
    )
    cp.pusher.to_user(state.user_id, _starting_frame(cp))
    return StartOutcome(started=True, status="starting", task_arn=launched.task_arn)


def record_failed_start(cp: ControlPlane, starting: TaskState, text: str) -> TaskState | None:
    """Starting → Idle with the reason and one more failed attempt; the user's tabs are told why.

    None when the row changed meanwhile (whoever changed it owns what happens next).
    """
    attempts = starting.start_attempts + 1
    idle = cp.task_state.transition(
        starting,
        Status.IDLE,
        cp.clock(),
        set_={"lastError": text[:500], "startAttempts": attempts},
        remove=lifecycle.LIVE_TASK_ATTRIBUTES,
    )
    if idle is None:
        return None
    count("StartFailed")
    cp.pusher.to_user(
        starting.user_id,
        protocol.error(
            "start_failed",
            f"The agent could not start: {text}. Your message is kept and will be answered once it starts.",
            attempt=attempts,
        ),
    )
    cp.pusher.to_user(starting.user_id, protocol.status("idle"))
    return idle


def stop_task(cp: ControlPlane, task_arn: str, reason: str) -> bool:
    """StopTask; False only when ECS says the task is already gone (errors count as "will stop")."""
    try:
        return cp.launcher.stop(task_arn, reason)
    except Exception:  # the watchdog's orphan and stuck-Stopping rules catch what this misses
        logger.exception("stop task failed", task_arn=task_arn)
        return True


def request_start(cp: ControlPlane, user_id: str) -> StartOutcome:
    """A user explicitly asks for their agent (HTTP POST /api/agent/start)."""
    now = cp.clock()
    state = cp.task_state.touch_activity(user_id, now)
    action = lifecycle.action_for_message(state, now, cp.cfg.lifecycle)
    if action is not MessageAction.START:
        return StartOutcome(started=False, status=lifecycle.client_status(state, now, cp.cfg.lifecycle)[0])
    return start_agent(cp, state, reason="user request")


def request_stop(cp: ControlPlane, user_id: str, reason: str = "stopped by user") -> str:
    """Stop the user's agent gracefully (the bridge backs up and releases its claims); returns the status."""
    for _ in range(3):
        state = cp.task_state.get(user_id)
        if state.status in (Status.IDLE, Status.STOPPING):
            return state.status.value.lower()
        status = stop_agent(cp, state, reason)
        if status == "stopping":
            count("TaskStopRequested")
        if status is not None:
            return status
    return cp.task_state.get(user_id).status.value.lower()


def stop_agent(cp: ControlPlane, state: TaskState, reason: str) -> str | None:
    """Starting/Running → Stopping, then StopTask; the status the user's tabs are told, None if we lost."""
    stopping = cp.task_state.transition(state, Status.STOPPING, cp.clock())
    if stopping is None:
        return None
    if not state.task_arn or not stop_task(cp, state.task_arn, reason):
        # No task to stop (never attached, or already gone): no STOPPED event will settle the row.
        settle_idle(cp, stopping)
        return "idle"
    cp.pusher.to_user(state.user_id, protocol.status("stopping"))
    return "stopping"


def stop_unused_warm(cp: ControlPlane, state: TaskState) -> str | None:
    """Stop an agent woken without a message that got none (Running → Stopping only while still unused,
    then StopTask); the status the tabs are told, None when a message (or anything else) came first."""
    if not state.task_arn or not cp.task_state.stop_unused_warm(
        state.user_id, state.task_arn, state, cp.clock()
    ):
        return None
    count("TaskStopRequested")
    if not stop_task(cp, state.task_arn, "woken without a message"):
        stopping = cp.task_state.get(state.user_id)
        settle_idle(cp, stopping)
        return "idle"
    cp.pusher.to_user(state.user_id, protocol.status("stopping"))
    return "stopping"


def settle_idle(cp: ControlPlane, state: TaskState) -> TaskState | None:
    """Back to Idle without the task (nothing else will settle the row); the user's tabs are told."""
    idle = cp.task_state.transition(state, Status.IDLE, cp.clock(), remove=lifecycle.LIVE_TASK_ATTRIBUTES)
    if idle is not None:
        cp.pusher.to_user(state.user_id, protocol.status("idle"))
    return idle


def abort_reply(cp: ControlPlane, user_id: str, conversation_id: str | None) -> bool:
    """Ask the running agent to abort the current reply; False when no agent is there to ask."""
    state = cp.task_state.get(user_id)
    if state.status is not Status.RUNNING or not state.agent_connection_id:
        return False
    return cp.pusher.send(state.agent_connection_id, protocol.abort(conversation_id))


def status_frame(cp: ControlPlane, user_id: str, state: TaskState | None = None) -> dict[str, object]:
    """The `status` frame for a user right now (from `state` when the caller has already read it)."""
    state = state or cp.task_state.get(user_id, consistent=False)
    name, phase, eta = lifecycle.client_status(state, cp.clock(), cp.cfg.lifecycle)
    return protocol.status(name, phase=phase, eta_seconds=eta)
