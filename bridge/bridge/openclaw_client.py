"""Client for the OpenClaw gateway's WebSocket protocol v4 (docs/openclaw.md, Protocol).

One connection to the gateway on loopback (opened by `openclaw_handshake`), one reader task that parses
every frame once (`openclaw_frames`), requests matched by id, and `chat`/`agent` events routed by session
key to the run waiting on them, whose `RunFollower` (`openclaw_run`) says what each event means. The
gateway goes away now and then (a crash, our supervisor restarting it), so the connection is
re-established automatically and an unfinished `chat.send` is sent again with the same idempotency key: a
live gateway answers `in_flight`/`ok` without running the model twice; a restarted one has forgotten the
key and runs it afresh (or, observed, steers it into the run its own restart recovery started, which the
client then follows).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bridge.openclaw_frames import (
    AgentEvent,
    ChatEvent,
    ChatSendAck,
    Frame,
    GatewayError,
    Response,
    Shutdown,
    parse_frame,
)
from bridge.openclaw_handshake import (
    HANDSHAKE_TIMEOUT,
    Retry,
    handshake,
)
from bridge.openclaw_run import (
    Delta,
    Disconnected,
    Finished,
    Resend,
    RunFollower,
    RunResult,
    Status,
    Tool,
    reply_from_history,
)
from bridge.openclaw_session import check_session_key
from serverless_openclaw.observability import logger

RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 2.0
RETRY_GROWTH = 1.5
# Long enough for chat.abort's round trip and the `aborted` event (observed 0.1 s after the ack).
ABORT_GRACE = 5.0

OnDelta = Callable[[str], Awaitable[None]]
OnStatus = Callable[[str], Awaitable[None]]
OnTool = Callable[[dict[str, Any]], Awaitable[None]]


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached (or kept saying it is starting) within the connect deadline."""


class _ConnectionLost(Exception):
    """A request could not complete because its connection closed."""


class _RunWatch:
    """One running `run()` call: its queue of events, and the follower that makes sense of them.

    The reader queues the session's events and the loss of each connection.
    """

    def __init__(self, session_key: str, wants_agent_events: bool) -> None:
        self.queue: asyncio.Queue[ChatEvent | AgentEvent | Disconnected] = asyncio.Queue()
        self.follower = RunFollower(session_key)
        self.wants_agent_events = wants_agent_events


class _Callbacks:
    """The caller's stream callbacks; a failing one is logged once and never loses the reply."""

    def __init__(
        self,
        on_delta: OnDelta | None,
        on_status: OnStatus | None,
        on_tool: OnTool | None,
        on_rewrite: OnDelta | None = None,
    ) -> None:
        self._on_delta = on_delta
        self._on_rewrite = on_rewrite
        self._on_status = on_status
        self._on_tool = on_tool
        self._failed: set[str] = set()

    async def handle(self, step: Delta | Status | Tool) -> None:
        """Hand one step of the run to the callback that wants it."""
        if isinstance(step, Delta) and step.rewrite:
            # Without a taker, what was streamed stays wrong until the final text corrects it.
            if self._on_rewrite is not None:
                await self._call("on_rewrite", self._on_rewrite(step.text))
        elif isinstance(step, Delta) and self._on_delta is not None:
            await self._call("on_delta", self._on_delta(step.text))
        elif isinstance(step, Status) and self._on_status is not None:
            await self._call("on_status", self._on_status(step.phase))
        elif isinstance(step, Tool) and self._on_tool is not None:
            await self._call("on_tool", self._on_tool(step.payload))

    async def _call(self, name: str, call: Awaitable[None]) -> None:
        # A failing consumer (a closed browser tab, a flaky push) must not lose the reply being collected.
        try:
            await call
        except Exception as exc:
            if name not in self._failed:  # once per run: a broken consumer fails on every delta
                self._failed.add(name)
                logger.warning("run callback failed", callback=name, error=type(exc).__name__)


class GatewayClient:
    """A protocol v4 operator client for the local OpenClaw gateway, with reconnects and per-session runs."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        connect_deadline: float = 120.0,
        run_timeout: float = 300.0,
        client_version: str = "0.1.0",
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._connect_deadline = connect_deadline
        self._run_timeout = run_timeout
        self._client_version = client_version
        # Told each time the connection is back after a loss: the gateway can run messages again.
        self._on_reconnect = on_reconnect
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._ready = False  # handshake done and no `shutdown` announced on this connection
        self._state_changed = asyncio.Event()
        self._manager: asyncio.Task[None] | None = None
        self._closed = False
        self._fatal: GatewayError | None = None
        self._pending: dict[str, tuple[int, asyncio.Future[Response]]] = {}
        self._watches: dict[str, _RunWatch] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._lock_users: dict[str, int] = {}
        self.hello: dict[str, Any] = {}  # the last hello-ok payload: server version, policy, session defaults

    # ----------------------------------------------------------------------------------- connection

    @property
    def connected(self) -> bool:
        """True while a handshaken connection is open and the gateway has not announced a shutdown."""
        return self._ready and self._ws is not None and not self._closed

    async def start(self) -> None:
        """Connect and handshake, retrying while the gateway starts; then keep the connection up."""
        if self._manager is not None or self._closed:
            raise RuntimeError("GatewayClient.start() may be called once")
        ws = await self._connect_until(self._connect_deadline)
        self._attach(ws)
        self._manager = asyncio.create_task(self._maintain(ws), name="openclaw-client")

    async def close(self) -> None:
        """Close the connection for good: no reconnect; waiting runs and requests fail with CLOSED."""
        self._closed = True
        self._ready = False
        self._state_changed.set()
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await manager
        ws = self._ws
        if ws is not None:
            await ws.close()
            self._detach(self._generation)

    async def _maintain(self, ws: ClientConnection) -> None:
        """Read frames; when the connection ends, reconnect with the same rules as start()."""
        while True:
            generation = self._generation
            await self._read(ws, generation)
            self._detach(generation)
            if self._closed:
                return
            reconnected = await self._reconnect()
            if reconnected is None:
                return
            ws = reconnected
            self._attach(ws)
            logger.info("gateway reconnected", generation=self._generation)
            self._reconnected()

    def _reconnected(self) -> None:
        if self._on_reconnect is None:
            return
        try:
            self._on_reconnect()
        except Exception:  # a broken listener must not end the connection's upkeep
            logger.exception("gateway reconnect listener failed")

    async def _reconnect(self) -> ClientConnection | None:
        """A new connection, however long it takes; None when the gateway refuses the client for good."""
        while True:
            try:
                return await self._connect_until(self._connect_deadline)
            except GatewayUnavailable as exc:
                # Our own supervisor restarts a dead gateway with backoff, so keep trying; runs and
                # requests waiting meanwhile give up at their own deadlines.
                logger.warning("gateway still unavailable, retrying", reason=exc.message)
            except GatewayError as exc:
                logger.error("gateway rejected the reconnect", code=exc.code)
                self._fatal = exc
                self._state_changed.set()
                return None

    async def _connect_until(self, budget: float) -> ClientConnection:
        """Handshake attempts with backoff until one succeeds, a fatal error, or the budget is spent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        backoff = RETRY_FIRST_DELAY
        attempts = 0
        while True:
            attempts += 1
            timeout = max(0.05, min(HANDSHAKE_TIMEOUT, deadline - loop.time()))
            try:
                ws, hello = await handshake(self._url, self._token, self._client_version, timeout)
                self.hello = hello.payload
                return ws
            except Retry as retry:
                reason = retry.reason
                delay = retry.delay if retry.delay is not None else backoff
                backoff = min(RETRY_MAX_DELAY, backoff * RETRY_GROWTH)
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closed:
                raise GatewayUnavailable(
                    "UNAVAILABLE", f"gateway not ready after {attempts} attempts: {reason}", retryable=True
                )
            logger.debug("gateway not ready, retrying", reason=reason, delay=round(delay, 3))
            await asyncio.sleep(min(delay, remaining))

    def _attach(self, ws: ClientConnection) -> None:
        self._generation += 1
        self._ws = ws
        self._ready = True
        self._state_changed.set()

    def _detach(self, generation: int) -> None:
        """Forget a closed connection: fail its requests and tell running runs their events may be lost."""
        if generation != self._generation or self._ws is None:
            return
        self._ws = None
        self._ready = False
        self._state_changed.set()
        for request_id, (request_generation, future) in list(self._pending.items()):
            if request_generation == generation and not future.done():
                future.set_exception(_ConnectionLost())
                self._pending.pop(request_id, None)
        for watch in self._watches.values():
            watch.queue.put_nowait(Disconnected(generation))

    async def _read(self, ws: ClientConnection, generation: int) -> None:
        try:
            async for raw in ws:
                try:
                    frame = parse_frame(raw)
                except ValueError:
                    logger.warning("gateway sent a frame that is not JSON")
                    continue
                if frame is not None:
                    self._dispatch(frame, generation)
        except ConnectionClosed:
            pass
        code = ws.close_code
        if not self._closed:
            logger.warning("gateway connection closed", code=code, reason=ws.close_reason or "")

    def _dispatch(self, frame: Frame, generation: int) -> None:
        if isinstance(frame, Response):
            self._answer(frame)
        elif isinstance(frame, Shutdown):
            # The close (1012) follows; new requests wait for the next connection meanwhile, while
            # events of runs the gateway drains before exiting are still read from this one.
            logger.info("gateway announced shutdown", restart_expected=frame.restart_expected_ms)
            if generation == self._generation:
                self._ready = False
        elif isinstance(frame, ChatEvent | AgentEvent):
            self._route(frame)

    def _answer(self, response: Response) -> None:
        entry = self._pending.pop(response.id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(response)

    def _route(self, event: ChatEvent | AgentEvent) -> None:
        """Queue an event for the run waiting in its session, if any (agent events only if it wants them)."""
        watch = self._watches.get(event.session_key)
        if watch is not None and (isinstance(event, ChatEvent) or watch.wants_agent_events):
            watch.queue.put_nowait(event)

    async def _wait_ready(self) -> tuple[ClientConnection, int]:
        """The ready connection and its generation, waiting (without a deadline) until there is one.

        Raises when there will be none: the client is closed, or the gateway refused it for good.
        """
        while True:
            if self._closed:
                raise GatewayError("CLOSED", "the gateway client is closed")
            if self._fatal is not None:
                raise self._fatal
            if self._manager is None:
                raise RuntimeError("GatewayClient.start() has not been called")
            ws = self._ws
            if self._ready and ws is not None:
                return ws, self._generation
            self._state_changed.clear()
            await self._state_changed.wait()

    async def _call(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Send one request on the current connection; its payload, or GatewayError / _ConnectionLost."""
        ws, generation = await self._wait_ready()
        request_id = uuid.uuid4().hex
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (generation, future)
        try:
            await ws.send(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
        except ConnectionClosed:
            self._pending.pop(request_id, None)
            if generation == self._generation:
                # Wait for the reader to notice the close and the manager to reconnect, not spin.
                self._ready = False
            raise _ConnectionLost() from None
        try:
            response = await future
        finally:
            self._pending.pop(request_id, None)
        if response.error is not None:
            raise response.error
        return generation, response.payload

    # ----------------------------------------------------------------------------------- requests

    async def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Call any gateway method and return its payload (TimeoutError after `timeout` seconds)."""
        async with asyncio.timeout(timeout):
            try:
                return (await self._call(method, params))[1]
            except _ConnectionLost:
                if self._closed:
                    raise GatewayError("CLOSED", "the gateway client is closed") from None
                raise GatewayError(
                    "CONNECTION_LOST", f"the connection closed before {method} was answered", retryable=True
                ) from None

    async def history(self, session_key: str, limit: int = 20) -> list[dict[str, Any]]:
        """The last `limit` messages of a session (`chat.history`)."""
        check_session_key(session_key)
        payload = await self.request("chat.history", {"sessionKey": session_key, "limit": limit})
        messages = payload.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        """Abort a session's run (its active one when run_id is None); True when something was aborted."""
        return await self._abort(session_key, run_id, timeout=30)

    async def _abort(self, session_key: str, run_id: str | None, *, timeout: float) -> bool:
        check_session_key(session_key)
        watch = self._watches.get(session_key)
        if run_id is None and watch is not None:
            run_id = watch.follower.run_id
        params: dict[str, Any] = {"sessionKey": session_key}
        if run_id is not None:
            params["runId"] = run_id
        payload = await self.request("chat.abort", params, timeout=timeout)
        aborted = bool(payload.get("aborted"))
        logger.info("run abort requested", session_key=session_key, run_id=run_id, aborted=aborted)
        return aborted

    # ----------------------------------------------------------------------------------- runs

    async def run(
        self,
        session_key: str,
        message: str,
        *,
        idempotency_key: str,
        on_delta: OnDelta | None = None,
        on_status: OnStatus | None = None,
        on_tool: OnTool | None = None,
        on_rewrite: OnDelta | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Send one message to a session and stream its reply; one run at a time per session.

        `on_delta` gets each new piece of text; `on_rewrite` the whole text when what was streamed must be
        replaced (a rewrite, or a restarted run that wrote another reply); `on_status` each status phase;
        `on_tool` the `agent` events of streams "tool" and "item". A lost connection is re-established and
        the message re-sent with the same idempotency key (the gateway does not run it twice unless it was
        restarted meanwhile). Raises
        TimeoutError (after asking the gateway to abort) when the run has not ended within `timeout`
        (default: the client's run_timeout), GatewayError if the gateway refuses it or the client closes.
        """
        check_session_key(session_key)
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        lock = self._locks.setdefault(session_key, asyncio.Lock())
        self._lock_users[session_key] = self._lock_users.get(session_key, 0) + 1
        try:
            # The gateway would not queue a second message: by default it steers it into the active run,
            # which then answers both at once. Waiting here keeps one reply per message.
            async with lock:
                return await self._run_alone(
                    session_key,
                    message,
                    idempotency_key,
                    _Callbacks(on_delta, on_status, on_tool, on_rewrite),
                    wants_agent_events=on_tool is not None,
                    timeout=self._run_timeout if timeout is None else timeout,
                )
        finally:
            self._lock_users[session_key] -= 1
            if not self._lock_users[session_key]:
                del self._lock_users[session_key]
                del self._locks[session_key]

    async def _run_alone(
        self,
        session_key: str,
        message: str,
        idempotency_key: str,
        callbacks: _Callbacks,
        *,
        wants_agent_events: bool,
        timeout: float,
    ) -> RunResult:
        watch = _RunWatch(session_key, wants_agent_events)
        self._watches[session_key] = watch
        try:
            try:
                async with asyncio.timeout(timeout):
                    return await self._drive(watch, session_key, message, idempotency_key, callbacks)
            except TimeoutError:
                run_id = watch.follower.run_id
                logger.warning("run timed out, aborting", session_key=session_key, run_id=run_id)
                await self._abort_after_timeout(watch, session_key)
                raise
        finally:
            del self._watches[session_key]

    async def _abort_after_timeout(self, watch: _RunWatch, session_key: str) -> None:
        """Ask the gateway to abort and give it a moment to end the run, so the session is free again."""
        run_id = watch.follower.run_id
        if run_id is None:
            return
        try:
            async with asyncio.timeout(ABORT_GRACE):
                if not await self._abort(session_key, run_id, timeout=ABORT_GRACE):
                    return
                while True:
                    item = await watch.queue.get()
                    if isinstance(item, ChatEvent) and item.run_id == run_id and item.terminal:
                        return
        except (GatewayError, TimeoutError) as exc:
            logger.warning("abort after timeout failed", session_key=session_key, error=type(exc).__name__)

    async def _drive(
        self, watch: _RunWatch, session_key: str, message: str, idempotency_key: str, callbacks: _Callbacks
    ) -> RunResult:
        """Send the message, and again after each lost connection, until its run has ended."""
        params = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
        while True:
            generation, ack = await self._send(params, idempotency_key)
            watch.follower.accepted(ack, generation)
            if ack.status == "ok":
                # It finished while we were away: its events are gone, its reply is in the transcript.
                return await self._recovered(session_key, ack.run_id, idempotency_key)
            result = await self._follow(watch, callbacks)
            if result is not None:
                return result
            logger.warning("connection lost mid-run, resending", session_key=session_key)

    async def _send(self, params: dict[str, Any], idempotency_key: str) -> tuple[int, ChatSendAck]:
        """`chat.send` until the gateway accepts it, through lost connections and retryable refusals."""
        while True:
            try:
                generation, payload = await self._call("chat.send", params)
            except _ConnectionLost:
                continue
            except GatewayError as exc:
                if not exc.retryable:
                    raise
                logger.info("chat.send refused for now, retrying", code=exc.code)
                await asyncio.sleep(exc.retry_after or RETRY_FIRST_DELAY)
                continue
            return generation, ChatSendAck.from_payload(payload, idempotency_key)

    async def _follow(self, watch: _RunWatch, callbacks: _Callbacks) -> RunResult | None:
        """Act on the run's events to its end; None when the connection was lost first."""
        while True:
            item = await watch.queue.get()
            if isinstance(item, Disconnected) and self._closed:
                raise GatewayError("CLOSED", "the gateway client is closed")
            for step in watch.follower.feed(item):
                if isinstance(step, Finished):
                    return step.result
                if isinstance(step, Resend):
                    return None
                await callbacks.handle(step)

    async def _recovered(self, session_key: str, run_id: str, idempotency_key: str) -> RunResult:
        messages = await self.history(session_key, limit=50)
        text = reply_from_history(messages, idempotency_key)
        logger.info("run reply recovered from history", session_key=session_key, run_id=run_id)
        return RunResult(state="final", text=text or "", run_id=run_id)
