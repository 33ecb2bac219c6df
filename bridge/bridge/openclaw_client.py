"""Client for the OpenClaw gateway's WebSocket protocol v4 (reference/openclaw-gateway.md §3, §4).

One connection to the gateway on loopback, one reader task, requests matched by id and `chat` events
routed by session key and run id. The gateway goes away now and then (a crash, our supervisor restarting
it), so the connection is re-established automatically and an unfinished `chat.send` is sent again with
the same idempotency key: a live gateway answers `in_flight`/`ok` without running the model twice; a
restarted one has forgotten the key and runs it afresh (or, observed, steers it into the run its own
restart recovery started, which the client then follows).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from serverless_openclaw.observability import logger

PROTOCOL_VERSION = 4
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
DISPLAY_NAME = "serverless-openclaw bridge"
SCOPES = ("operator.read", "operator.write")
# The gateway's frames may reach policy.maxPayload (25 MiB); leave headroom for transcripts in chat.history.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# The gateway's own pre-auth budget is 15 s; a handshake slower than that will not succeed anyway.
HANDSHAKE_TIMEOUT = 15.0
RETRY_FIRST_DELAY = 0.5
RETRY_MAX_DELAY = 2.0
RETRY_GROWTH = 1.5
# Long enough for chat.abort's round trip and the `aborted` event (observed 0.1 s after the ack).
ABORT_GRACE = 5.0
# Close codes after which a new connection may succeed: restart, "try again later", going away, drops.
RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013})
DROPPED_EVENTS = frozenset({"tick", "health", "presence"})
TERMINAL_STATES = frozenset({"final", "error", "aborted"})
MAX_SESSION_KEY_LENGTH = 512

RunState = Literal["final", "error", "aborted", "merged"]
OnDelta = Callable[[str], Awaitable[None]]
OnStatus = Callable[[str], Awaitable[None]]
OnTool = Callable[[dict[str, Any]], Awaitable[None]]


class GatewayError(Exception):
    """An error answered by the gateway (or a connection failure) with its code and retry hint."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.details = details or {}

    @classmethod
    def from_frame(cls, error: Any) -> GatewayError:
        """Build from a `res` frame's `error` object, preferring the specific `details.code`."""
        if not isinstance(error, dict):
            return cls("UNKNOWN", "the gateway answered ok:false without an error")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        assert isinstance(details, dict)
        # The top-level code is generic (INVALID_REQUEST); details.code says what really happened.
        code = str(details.get("code") or error.get("code") or "UNKNOWN")
        retry_after_ms = error.get("retryAfterMs")
        return cls(
            code,
            str(error.get("message") or code),
            retryable=bool(error.get("retryable")) or error.get("code") == "UNAVAILABLE",
            retry_after=retry_after_ms / 1000 if isinstance(retry_after_ms, int | float) else None,
            details=details,
        )


class GatewayUnavailable(GatewayError):
    """The gateway could not be reached (or kept saying it is starting) within the connect deadline."""


@dataclass(frozen=True)
class RunResult:
    """How one `chat.send` ended and the full reply text.

    state "merged": the gateway steered the input into another run of the session (reference §3.6);
    `text` is the reply of that run (which may also answer the other run's input), or "" if unknown.
    """

    state: RunState
    text: str
    run_id: str
    error_message: str | None = None
    error_kind: str | None = None
    stop_reason: str | None = None


@dataclass(frozen=True)
class _Event:
    name: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class _Lost:
    """The connection a run was listening on is gone (its events may have been missed)."""

    generation: int


_Item = _Event | _Lost


class _ConnectionLost(Exception):
    """A request could not complete because its connection closed."""


class _Retry(Exception):
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class _RunWatch:
    """What the reader delivers to one running `run()` call: its session's events and connection losses."""

    def __init__(self, wants_agent_events: bool) -> None:
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.run_id: str | None = None
        self.wants_agent_events = wants_agent_events


class _Reply:
    """The reply text as the deltas build it, and how much of it the stream consumer has been given."""

    def __init__(self) -> None:
        self.text = ""
        self.emitted = ""
        self.resync = False  # events were missed while disconnected: trust the next cumulative snapshot

    def apply(self, payload: dict[str, Any]) -> str:
        """Apply one `delta` event; return the new text to stream (empty when nothing new)."""
        piece = payload.get("deltaText")
        piece = piece if isinstance(piece, str) else ""
        text = piece if payload.get("replace") else self.text + piece
        if self.resync:
            # Deltas sent while we were disconnected are lost; the cumulative snapshot holds them. Only
            # then is it read: it is the whole reply so far, not worth rebuilding for every delta.
            snapshot = message_text(payload.get("message"))
            if snapshot is not None and snapshot.startswith(self.text):
                text, self.resync = snapshot, False
        return self._set(text)

    def adopt(self, text: str) -> str:
        """Start over from another run's text so far; return it to stream."""
        self.reset()
        # We may have joined that run late: its next cumulative snapshot fills in what we missed.
        self.resync = True
        return self._set(text)

    def reset(self) -> None:
        self.text = self.emitted = ""

    def _set(self, text: str) -> str:
        self.text = text
        if text.startswith(self.emitted):
            increment, self.emitted = text[len(self.emitted) :], text
            return increment
        # A rewrite cannot be streamed as an increment; the final text (stream_end) corrects it.
        self.emitted = text
        return ""


class _Callbacks:
    """The caller's stream callbacks; a failing one is logged once and never loses the reply."""

    def __init__(self, on_delta: OnDelta | None, on_status: OnStatus | None, on_tool: OnTool | None) -> None:
        self._on_delta = on_delta
        self._on_status = on_status
        self._on_tool = on_tool
        self._failed: set[str] = set()

    async def delta(self, increment: str) -> None:
        if increment and self._on_delta is not None:
            await self._call("on_delta", self._on_delta(increment))

    async def status(self, phase: str) -> None:
        if self._on_status is not None:
            await self._call("on_status", self._on_status(phase))

    async def tool(self, payload: dict[str, Any]) -> None:
        if self._on_tool is not None:
            await self._call("on_tool", self._on_tool(payload))

    async def _call(self, name: str, call: Awaitable[None]) -> None:
        # A failing consumer (a closed browser tab, a flaky push) must not lose the reply being collected.
        try:
            await call
        except Exception as exc:
            if name not in self._failed:  # once per run: a broken consumer fails on every delta
                self._failed.add(name)
                logger.warning("run callback failed", callback=name, error=type(exc).__name__)


def _track(others: dict[str, str], run_id: str, payload: dict[str, Any]) -> None:
    """Keep the text of another active run of the session, in case our input gets merged into it."""
    state = payload.get("state")
    if state in TERMINAL_STATES:
        others.pop(run_id, None)
    elif state == "delta":
        piece = payload.get("deltaText")
        piece = piece if isinstance(piece, str) else ""
        # The cumulative snapshot also covers deltas sent before we started listening.
        snapshot = message_text(payload.get("message"))
        text = piece if payload.get("replace") else others.get(run_id, "") + piece
        others[run_id] = snapshot if snapshot is not None else text
    else:
        others.setdefault(run_id, "")


_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")


def session_key_for(conversation_id: str) -> str:
    """The canonical OpenClaw session key of one conversation: `agent:main:conversation:{conversation_id}`.

    The key does not name the channel: a conversation begun on Telegram and continued in the web chat is
    one session, so the agent keeps its context (and a `telegram` segment could make OpenClaw think its
    own Telegram channel owns the session).

    OpenClaw lower-cases session keys and emits its chat events under the lower-cased key, so the key is
    lower-case here too. ULIDs are case-insensitive by definition; any other id with capitals gets a short
    hash of its original spelling, so `Plan` and `plan` stay two sessions.
    """
    if not conversation_id or not conversation_id.strip():
        raise ValueError("conversation_id must not be empty")
    lowered = conversation_id.lower()
    if lowered != conversation_id and not _ULID.match(conversation_id):
        lowered += "-" + hashlib.sha256(conversation_id.encode()).hexdigest()[:8]
    key = f"agent:main:conversation:{lowered}"
    _check_session_key(key)
    return key


def _check_session_key(session_key: str) -> None:
    # Events carry canonical keys only; a bare key would be canonicalised by the gateway and its events
    # would never match the key we route on.
    if not session_key.startswith("agent:") or len(session_key.split(":")) < 3:
        raise ValueError("session key must be canonical: agent:<agentId>:<rest>")
    if session_key != session_key.lower():
        raise ValueError("session key must be lower-case (the gateway's events carry the lower-cased key)")
    if len(session_key) > MAX_SESSION_KEY_LENGTH:
        raise ValueError(f"session key longer than {MAX_SESSION_KEY_LENGTH} characters")


def message_text(message: Any) -> str | None:
    """The text of a gateway chat message (`content` as a string or a list of `{type:"text", text}`)."""
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return None


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
    ) -> None:
        self._url = url
        self._token = token
        self._connect_deadline = connect_deadline
        self._run_timeout = run_timeout
        self._client_version = client_version
        self._ws: ClientConnection | None = None
        self._generation = 0
        self._ready = False  # handshake done and no `shutdown` announced on this connection
        self._state_changed = asyncio.Event()
        self._manager: asyncio.Task[None] | None = None
        self._closed = False
        self._fatal: GatewayError | None = None
        self._pending: dict[str, tuple[int, asyncio.Future[dict[str, Any]]]] = {}
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
            while True:
                try:
                    ws = await self._connect_until(self._connect_deadline)
                    break
                except GatewayUnavailable as exc:
                    # Our own supervisor restarts a dead gateway with backoff, so keep trying; runs and
                    # requests waiting meanwhile give up at their own deadlines.
                    logger.warning("gateway still unavailable, retrying", reason=exc.message)
                except GatewayError as exc:
                    logger.error("gateway rejected the reconnect", code=exc.code)
                    self._fatal = exc
                    self._state_changed.set()
                    return
            self._attach(ws)
            logger.info("gateway reconnected", generation=self._generation)

    async def _connect_until(self, budget: float) -> ClientConnection:
        """Handshake attempts with backoff until one succeeds, a fatal error, or the budget is spent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        backoff = RETRY_FIRST_DELAY
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - loop.time()
            try:
                return await self._connect_once(max(0.05, min(HANDSHAKE_TIMEOUT, remaining)))
            except _Retry as retry:
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

    async def _connect_once(self, timeout: float) -> ClientConnection:
        """One connection and handshake; raises _Retry for transient failures, GatewayError if fatal."""
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(timeout):
                # No Origin and no extra headers: any Origin makes the gateway treat us as a browser.
                # proxy=None: the gateway is on loopback and must never be reached through a proxy.
                ws = await connect(
                    self._url,
                    max_size=MAX_FRAME_BYTES,
                    compression=None,
                    proxy=None,
                    open_timeout=None,
                )
                challenge = json.loads(await ws.recv())
                if not (
                    isinstance(challenge, dict)
                    and challenge.get("type") == "event"
                    and challenge.get("event") == "connect.challenge"
                ):
                    raise GatewayError("PROTOCOL_ERROR", "the gateway did not open with connect.challenge")
                request_id = uuid.uuid4().hex
                await ws.send(json.dumps(self._connect_frame(request_id)))
                while True:
                    frame = json.loads(await ws.recv())
                    if (
                        isinstance(frame, dict)
                        and frame.get("type") == "res"
                        and frame.get("id") == request_id
                    ):
                        break
        except TimeoutError:
            await _discard(ws)
            raise _Retry("handshake timed out") from None
        except (OSError, InvalidHandshake) as exc:
            await _discard(ws)
            raise _Retry(type(exc).__name__) from None
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            if code in RETRYABLE_CLOSE_CODES:
                raise _Retry(f"closed with {code}") from None
            raise GatewayError(
                "HANDSHAKE_REJECTED", f"the gateway closed the connection with {code}"
            ) from None
        except ValueError:
            await _discard(ws)
            raise GatewayError("PROTOCOL_ERROR", "the gateway sent a frame that is not JSON") from None
        except InvalidURI:
            raise GatewayError("INVALID_URL", "the gateway URL is not a ws:// URL") from None
        except GatewayError:
            await _discard(ws)
            raise
        if not frame.get("ok"):
            await _discard(ws)
            error = GatewayError.from_frame(frame.get("error"))
            if error.retryable:
                raise _Retry(error.code, error.retry_after)
            logger.error("gateway refused the connection", code=error.code)
            raise error
        payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
        assert isinstance(payload, dict)
        if payload.get("type") != "hello-ok" or payload.get("protocol") != PROTOCOL_VERSION:
            await _discard(ws)
            raise GatewayError("PROTOCOL_MISMATCH", "the gateway did not answer hello-ok for protocol 4")
        self.hello = payload
        server = payload.get("server") if isinstance(payload.get("server"), dict) else {}
        assert isinstance(server, dict)
        logger.info("gateway connected", server_version=server.get("version"), protocol=PROTOCOL_VERSION)
        return ws

    def _connect_frame(self, request_id: str) -> dict[str, Any]:
        return {
            "type": "req",
            "id": request_id,
            "method": "connect",
            "params": {
                "minProtocol": PROTOCOL_VERSION,
                "maxProtocol": PROTOCOL_VERSION,
                "client": {
                    "id": CLIENT_ID,
                    "version": self._client_version,
                    "platform": sys.platform,
                    "mode": CLIENT_MODE,
                    "displayName": DISPLAY_NAME,
                },
                "role": "operator",
                "scopes": list(SCOPES),
                "caps": ["tool-events"],
                "auth": {"token": self._token},
            },
        }

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
            watch.queue.put_nowait(_Lost(generation))

    async def _read(self, ws: ClientConnection, generation: int) -> None:
        try:
            async for raw in ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    logger.warning("gateway sent a frame that is not JSON")
                    continue
                if isinstance(frame, dict):
                    self._dispatch(frame, generation)
        except ConnectionClosed:
            pass
        code = ws.close_code
        if not self._closed:
            logger.warning("gateway connection closed", code=code, reason=ws.close_reason or "")

    def _dispatch(self, frame: dict[str, Any], generation: int) -> None:
        kind = frame.get("type")
        if kind == "res":
            entry = self._pending.pop(str(frame.get("id")), None)
            if entry is not None and not entry[1].done():
                entry[1].set_result(frame)
            return
        if kind != "event":
            return
        name = frame.get("event")
        payload = frame.get("payload")
        if name in DROPPED_EVENTS or not isinstance(payload, dict):
            return
        if name == "shutdown":
            # The close (1012) follows; new requests wait for the next connection meanwhile, while
            # events of runs the gateway drains before exiting are still read from this one.
            logger.info("gateway announced shutdown", restart_expected=payload.get("restartExpectedMs"))
            if generation == self._generation:
                self._ready = False
            return
        if name not in ("chat", "agent"):
            return
        session_key = payload.get("sessionKey")
        watch = self._watches.get(session_key) if isinstance(session_key, str) else None
        if watch is None or (name == "agent" and not watch.wants_agent_events):
            return
        watch.queue.put_nowait(_Event(str(name), payload))

    async def _wait_ready(self) -> None:
        """Wait (without a deadline of its own) until a connection is ready; raise if there will be none."""
        while True:
            if self._closed:
                raise GatewayError("CLOSED", "the gateway client is closed")
            if self._fatal is not None:
                raise self._fatal
            if self._manager is None:
                raise RuntimeError("GatewayClient.start() has not been called")
            if self.connected:
                return
            self._state_changed.clear()
            await self._state_changed.wait()

    async def _call(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Send one request on the current connection; its payload, or GatewayError / _ConnectionLost."""
        await self._wait_ready()
        ws, generation = self._ws, self._generation
        assert ws is not None
        request_id = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
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
            frame = await future
        finally:
            self._pending.pop(request_id, None)
        if not frame.get("ok"):
            raise GatewayError.from_frame(frame.get("error"))
        payload = frame.get("payload")
        return generation, payload if isinstance(payload, dict) else {}

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
        _check_session_key(session_key)
        payload = await self.request("chat.history", {"sessionKey": session_key, "limit": limit})
        messages = payload.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        """Abort a session's run (its active one when run_id is None); True when something was aborted."""
        return await self._abort(session_key, run_id, timeout=30)

    async def _abort(self, session_key: str, run_id: str | None, *, timeout: float) -> bool:
        _check_session_key(session_key)
        watch = self._watches.get(session_key)
        if run_id is None and watch is not None:
            run_id = watch.run_id
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
        timeout: float | None = None,
    ) -> RunResult:
        """Send one message to a session and stream its reply; one run at a time per session.

        `on_delta` gets each new piece of text; `on_status` each status phase; `on_tool` the `agent` events
        of streams "tool" and "item". A lost connection is re-established and the message re-sent with the
        same idempotency key (the gateway does not run it twice unless it was restarted meanwhile). Raises
        TimeoutError (after asking the gateway to abort) when the run has not ended within `timeout`
        (default: the client's run_timeout), GatewayError if the gateway refuses it or the client closes.
        """
        _check_session_key(session_key)
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        lock = self._locks.setdefault(session_key, asyncio.Lock())
        self._lock_users[session_key] = self._lock_users.get(session_key, 0) + 1
        try:
            # The gateway would not queue a second message: by default it steers it into the active run,
            # which then answers both at once (reference §3.6). Waiting here keeps one reply per message.
            async with lock:
                return await self._run_alone(
                    session_key,
                    message,
                    idempotency_key,
                    on_delta,
                    on_status,
                    on_tool,
                    self._run_timeout if timeout is None else timeout,
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
        on_delta: OnDelta | None,
        on_status: OnStatus | None,
        on_tool: OnTool | None,
        timeout: float,
    ) -> RunResult:
        watch = _RunWatch(wants_agent_events=on_tool is not None)
        self._watches[session_key] = watch
        try:
            try:
                async with asyncio.timeout(timeout):
                    callbacks = _Callbacks(on_delta, on_status, on_tool)
                    return await self._drive(watch, session_key, message, idempotency_key, callbacks)
            except TimeoutError:
                logger.warning("run timed out, aborting", session_key=session_key, run_id=watch.run_id)
                await self._abort_after_timeout(watch, session_key)
                raise
        finally:
            del self._watches[session_key]

    async def _abort_after_timeout(self, watch: _RunWatch, session_key: str) -> None:
        """Ask the gateway to abort and give it a moment to end the run, so the session is free again."""
        if watch.run_id is None:
            return
        try:
            async with asyncio.timeout(ABORT_GRACE):
                if not await self._abort(session_key, watch.run_id, timeout=ABORT_GRACE):
                    return
                while True:
                    item = await watch.queue.get()
                    if (
                        isinstance(item, _Event)
                        and item.name == "chat"
                        and item.payload.get("runId") == watch.run_id
                        and item.payload.get("state") in TERMINAL_STATES
                    ):
                        return
        except (GatewayError, TimeoutError) as exc:
            logger.warning("abort after timeout failed", session_key=session_key, error=type(exc).__name__)

    async def _drive(
        self,
        watch: _RunWatch,
        session_key: str,
        message: str,
        idempotency_key: str,
        callbacks: _Callbacks,
    ) -> RunResult:
        reply = _Reply()
        params = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
        while True:
            try:
                generation, ack = await self._call("chat.send", params)
            except _ConnectionLost:
                continue
            except GatewayError as exc:
                if not exc.retryable:
                    raise
                logger.info("chat.send refused for now, retrying", code=exc.code)
                await asyncio.sleep(exc.retry_after or RETRY_FIRST_DELAY)
                continue
            run_id = str(ack.get("runId") or idempotency_key)
            status = ack.get("status")
            if watch.run_id is not None and status == "started":
                # A restarted gateway forgot the first attempt and runs the message afresh.
                logger.warning("run restarted by the gateway", session_key=session_key, run_id=run_id)
                reply.reset()
            watch.run_id = run_id
            if status == "ok":
                # It finished while we were away: its events are gone, its reply is in the transcript.
                return await self._recovered(session_key, run_id, idempotency_key)
            reply.resync = reply.resync or status == "in_flight"
            result = await self._consume(watch, generation, run_id, reply, callbacks)
            if result is not None:
                return result
            logger.warning("connection lost mid-run, resending", session_key=session_key)
            reply.resync = True

    async def _consume(
        self, watch: _RunWatch, generation: int, run_id: str, reply: _Reply, callbacks: _Callbacks
    ) -> RunResult | None:
        """Follow a run's events to its end; None when the connection was lost first."""
        follow: str | None = run_id  # the run whose events make the reply
        merged = False
        others: dict[str, str] = {}  # text so far of the session's other active runs, oldest first
        while True:
            item = await watch.queue.get()
            if isinstance(item, _Lost):
                if self._closed:
                    raise GatewayError("CLOSED", "the gateway client is closed")
                if item.generation == generation:
                    return None
                continue
            payload = item.payload
            event_run = payload.get("runId")
            if not isinstance(event_run, str):
                continue
            if item.name == "agent":
                if event_run == follow and payload.get("stream") in ("tool", "item"):
                    await callbacks.tool(payload)
                continue
            state = payload.get("state")
            if merged and follow is None and event_run != run_id:
                follow = event_run
                await callbacks.delta(reply.adopt(others.pop(event_run, "")))
            if event_run != follow:
                _track(others, event_run, payload)
                continue
            if state == "status":
                phase = payload.get("phase")
                if isinstance(phase, str):
                    await callbacks.status(phase)
            elif state == "delta":
                await callbacks.delta(reply.apply(payload))
            elif state in TERMINAL_STATES:
                if not merged and state == "final" and payload.get("message") is None and not reply.text:
                    # The gateway steered our input into another run of the session (reference §3.6):
                    # that run's reply answers it, so follow it (the newest active one, or the next).
                    merged = True
                    follow = next(reversed(others), None)
                    if follow is not None:
                        await callbacks.delta(reply.adopt(others.pop(follow)))
                    logger.info("input merged into another run", run_id=run_id, into=follow)
                    continue
                result = _result(payload, run_id, reply.text)
                if merged and result.state == "final":
                    return RunResult("merged", result.text, run_id, stop_reason=result.stop_reason)
                return result

    async def _recovered(self, session_key: str, run_id: str, idempotency_key: str) -> RunResult:
        messages = await self.history(session_key, limit=50)
        text = _reply_after(messages, idempotency_key)
        logger.info("run reply recovered from history", session_key=session_key, run_id=run_id)
        return RunResult(state="final", text=text or "", run_id=run_id)


def _result(payload: dict[str, Any], run_id: str, accumulated: str) -> RunResult:
    state = payload.get("state")
    message = payload.get("message")
    snapshot = message_text(message)
    stop_reason = payload.get("stopReason") if isinstance(payload.get("stopReason"), str) else None
    if state == "final" and message is None and not accumulated:
        # The gateway steered this input into another run of the session, which answers it.
        return RunResult(state="merged", text="", run_id=run_id, stop_reason=stop_reason)
    text = snapshot if snapshot is not None else accumulated
    if state == "error":
        error_message = payload.get("errorMessage")
        error_kind = payload.get("errorKind")
        return RunResult(
            state="error",
            text=text,
            run_id=run_id,
            error_message=error_message if isinstance(error_message, str) else "the model run failed",
            error_kind=error_kind if isinstance(error_kind, str) else None,
            stop_reason=stop_reason,
        )
    return RunResult(
        state="final" if state == "final" else "aborted", text=text, run_id=run_id, stop_reason=stop_reason
    )


def _reply_after(messages: list[dict[str, Any]], idempotency_key: str) -> str | None:
    """The last assistant text after the user message sent with this key (else the last assistant text)."""
    start = 0
    for index, row in enumerate(messages):
        meta = row.get("__openclaw")
        # Observed: the user row's key is "<idempotencyKey>:user".
        row_key = meta.get("idempotencyKey") if isinstance(meta, dict) else None
        if isinstance(row_key, str) and (
            row_key == idempotency_key or row_key.startswith(idempotency_key + ":")
        ):
            start = index + 1
    replies = [message_text(row) for row in messages[start:] if row.get("role") == "assistant"]
    texts = [text for text in replies if text]
    return texts[-1] if texts else None


async def _discard(ws: ClientConnection | None) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            await ws.close()
