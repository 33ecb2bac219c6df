"""The agent connection: the bridge dials OUT to the product's WebSocket API (docs/architecture.md).

The Fargate task has no ingress at all, so this link is how the control plane reaches the bridge: it
posts `nudge` (new Inbox items), `abort` (stop the running reply) and `shutdown` frames to it. The
bridge heartbeats over the same link; the `$default` route answers each heartbeat with whether
TaskState still references this task.

`$connect` accepts the link only once TaskState holds this task's ARN and token hash, so a refusal
(HTTP 401/403) right after boot is normal: the link keeps retrying with backoff and never gives up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.uri import parse_uri

from serverless_openclaw import protocol, untrusted
from serverless_openclaw.agent_credentials import AGENT_TASK_HEADER, AGENT_TOKEN_HEADER, AGENT_USER_HEADER
from serverless_openclaw.observability import logger

# The link's handshake carries the agent token as a header, and websockets logs raw headers at DEBUG:
# its own logger is capped at INFO so no log level setting can ever print the token.
_WS_LOGGER = logging.getLogger("bridge.agent_link.websockets")
_WS_LOGGER.setLevel(logging.INFO)

_MAX_FRAME_BYTES = 64 * 1024
"""Control-plane frames are tiny; anything larger is not from our API."""
_MAX_REASON_CHARS = 200


class AgentLink:
    """A self-healing dial-out WebSocket to the control plane: reconnects, heartbeats, dispatches commands.

    Callbacks run as their own tasks, so a slow one never stalls the link (or the next abort); they
    should hand long work to their owner. A failing callback is logged.
    """

    def __init__(
        self,
        url: str,
        *,
        user_id: str,
        task_arn: str,
        token: str,
        on_nudge: Callable[[], Awaitable[None]],
        on_abort: Callable[[str | None], Awaitable[None]],
        on_shutdown: Callable[[str], Awaitable[None]],
        on_superseded: Callable[[], Awaitable[None]],
        busy: Callable[[], bool],
        on_alive: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.time,
        heartbeat_interval: float = 30.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        open_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as exc:
            # A configuration error: fail at start-up rather than inside the retry loop.
            raise ValueError(f"the agent link needs a ws:// or wss:// URL: {exc}") from None
        if heartbeat_interval <= 0 or backoff_min <= 0 or backoff_max < backoff_min:
            raise ValueError("heartbeat_interval and backoff_min must be > 0, backoff_max >= backoff_min")
        self._url = url
        self._user_id = user_id
        self._task_arn = task_arn
        self._headers = {AGENT_USER_HEADER: user_id, AGENT_TASK_HEADER: task_arn, AGENT_TOKEN_HEADER: token}
        self._on_nudge = on_nudge
        self._on_abort = on_abort
        self._on_shutdown = on_shutdown
        self._on_superseded = on_superseded
        self._busy = busy
        self._on_alive = on_alive or (lambda sent_at: None)
        self._clock = clock
        # When each heartbeat still unanswered was sent: an accepted one vouches for TaskState as of then.
        self._sent: deque[float] = deque(maxlen=16)
        self._heartbeat_interval = heartbeat_interval
        self._backoff_min = backoff_min
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        self._rng = rng or random.Random()
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._callbacks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._superseded = False
        self._healthy = False

    @property
    def connected(self) -> bool:
        """Whether the link is open right now."""
        return self._ws is not None and self._connected.is_set()

    async def start(self) -> None:
        """Start dialing in the background; `wait_connected` tells when the link is up."""
        if self._supervisor is not None:
            return
        self._closing = False
        self._supervisor = asyncio.create_task(self._supervise(), name="agent-link")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the link to be open; False if it is not."""
        try:
            await asyncio.wait_for(self._connected.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop reconnecting and close the link; callbacks still running are cancelled (except the caller)."""
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        current = asyncio.current_task()
        pending = [task for task in self._callbacks if task is not current]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                ws = await connect(
                    self._url,
                    additional_headers=self._headers,
                    open_timeout=self._open_timeout,
                    max_size=_MAX_FRAME_BYTES,
                    logger=_WS_LOGGER,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                # 401/403: TaskState may not name this task (or its token hash) yet; retry, never spin.
                logger.warning("agent link refused", status=status, attempt=attempt)
            except Exception as exc:
                logger.warning("agent link could not connect", error=type(exc).__name__, attempt=attempt)
            else:
                try:
                    await self._serve(ws)
                except Exception:
                    # A bug in frame handling must not end the link for the task's lifetime: dial again.
                    logger.exception("agent link connection failed")
                    await ws.close()
                if self._healthy:
                    attempt = 0  # the API answered a heartbeat on that connection: start backoff afresh
            if self._closing:
                return
            delay = self._backoff(attempt)
            attempt += 1
            logger.info("agent link reconnecting", delay_seconds=round(delay, 2), attempt=attempt)
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, between backoff_min and backoff_max seconds."""
        ceiling = min(self._backoff_max, self._backoff_min * 2 ** min(attempt, 30))
        return self._rng.uniform(self._backoff_min, ceiling)

    async def _serve(self, ws: ClientConnection) -> None:
        """Run one connection until it closes: heartbeats, incoming commands, one drain nudge on connect."""
        self._ws = ws
        self._healthy = False
        self._sent.clear()
        self._connected.set()
        logger.info("agent link connected", user_id=self._user_id, task_arn=self._task_arn)
        heartbeats = asyncio.create_task(self._heartbeats(ws), name="agent-link-heartbeat")
        # Whatever was queued while the link was down got no nudge: drain it now.
        self._spawn(self._on_nudge(), "nudge")
        try:
            async for raw in ws:
                self._handle(raw)
        except ConnectionClosed:
            pass
        finally:
            self._connected.clear()
            self._ws = None
            heartbeats.cancel()
            await asyncio.gather(heartbeats, return_exceptions=True)
            if self._closing:
                await ws.close()
            logger.info("agent link closed", code=ws.close_code, reason=ws.close_reason)

    async def _heartbeats(self, ws: ClientConnection) -> None:
        while True:
            if not await self._send_heartbeat(ws):
                return
            await asyncio.sleep(self._heartbeat_interval)

    async def _send_heartbeat(self, ws: ClientConnection) -> bool:
        try:
            busy = bool(self._busy())
        except Exception:
            # Claiming busy is the safe side: an idle-looking task may be stopped by the watchdog.
            logger.exception("busy check failed")
            busy = True
        sent_at = self._clock()
        try:
            await ws.send(json.dumps({"action": "heartbeat", "busy": busy}))
        except ConnectionClosed:
            return False
        self._sent.append(sent_at)
        return True

    def _handle(self, raw: str | bytes) -> None:
        """Dispatch one frame from the control plane; anything unexpected is logged and ignored."""
        try:
            frame = untrusted.parse_json(raw, max_bytes=_MAX_FRAME_BYTES)
        except untrusted.BadInput as exc:
            # Never raise from here: an exception would drop a healthy link (and its heartbeats).
            logger.warning(
                "agent link frame is not acceptable JSON, ignored", size=len(raw), reason=exc.reason
            )
            return
        if not isinstance(frame, dict):
            logger.warning("agent link frame is not an object, ignored")
            return
        kind = frame.get("type")
        if kind == "nudge":
            self._spawn(self._on_nudge(), "nudge")
        elif kind == "abort":
            conversation_id = frame.get("conversationId")
            # The control plane only sends ids it validated; anything else means "whatever runs".
            self._spawn(
                self._on_abort(conversation_id if protocol.is_identifier(conversation_id) else None), "abort"
            )
        elif kind == "shutdown":
            reason = _reason(frame.get("reason"))
            logger.info("shutdown requested over the agent link", reason=reason)
            self._spawn(self._on_shutdown(reason), "shutdown")
        elif kind == "heartbeat":
            self._heartbeat_answered(frame.get("accepted"))
        elif kind == "error":
            self._error_frame(frame)
        else:
            # API Gateway's own replies ({"message": "Internal server error", …}) land here too.
            logger.warning("unknown agent link frame, ignored", type=str(kind)[:64], keys=sorted(frame)[:10])

    def _heartbeat_answered(self, accepted: object) -> None:
        sent_at = self._sent.popleft() if self._sent else None
        if accepted is True:
            self._healthy = True
            if sent_at is not None:
                self._on_alive(sent_at)
        elif accepted is False:
            if self._superseded:
                return
            self._superseded = True
            logger.warning("TaskState no longer references this task", task_arn=self._task_arn)
            self._spawn(self._on_superseded(), "superseded")
        else:
            logger.warning("heartbeat answer without a boolean 'accepted', ignored")

    def _error_frame(self, frame: dict[str, Any]) -> None:
        code = str(frame.get("code"))[:64]
        logger.warning("control plane answered with an error", code=code)
        ws = self._ws
        if code == "unauthorized" and ws is not None:
            # The Connections row of this link is gone: the API no longer knows us, so dial again.
            self._spawn(ws.close(code=1000, reason="reconnecting"), "reconnect")

    def _spawn(self, work: Awaitable[None], what: str) -> None:
        task = asyncio.create_task(self._guarded(work, what), name=f"agent-link-{what}")
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _guarded(work: Awaitable[None], what: str) -> None:
        try:
            await work
        except Exception:
            logger.exception("agent link callback failed", callback=what)


def _reason(value: object) -> str:
    """A shutdown reason fit for logs and status messages; "" when it is not short, printable text."""
    if not isinstance(value, str) or len(value) > _MAX_REASON_CHARS or not untrusted.is_clean_text(value):
        return ""
    return value
