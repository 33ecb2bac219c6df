"""A loopback stand-in for the OpenClaw gateway speaking protocol v4 (docs/openclaw.md).

It checks the handshake the way the real gateway does (token, client id/mode, protocol range, no Origin
header; the same error codes and close codes), answers `chat.send` / `chat.abort` / `chat.history`
idempotently, broadcasts `chat` events to every connection and records every frame it receives. What a
run does is chosen by the message text, like a scripted stub model:

- anything else: streams "Echo: <message>" word by word, then `final`;
- a `chat.send` to a session with an active run is "steered" like the real gateway's default: it gets
  its own run id, an immediate `final` without `message`, and its text joins the active run's reply;
- "!error": `status`, then `error` with the provider-failure `errorMessage` (after no delay);
- "!slow": streams "tok0 tok1 …" until `chat.abort`, then `aborted` with the partial text;
- "!hold": `status`, then waits for `release(session_key)` (or an abort) before answering;
- "!replace": "Helo", then a `replace:true` delta "Hello", then " there";
- "!drop": two deltas, then `shutdown` + close 1012 on every connection; one delta is emitted while
  nobody is connected; once the client re-sends its `chat.send` (answered `in_flight`) the run ends;
- "!drop-finish": one delta, then `shutdown` + close 1012; the run finishes while nobody is connected,
  so the re-sent `chat.send` is answered `ok` and the reply is only in `chat.history`;
- "!drop-forget": one delta, then the gateway "dies" (close without `shutdown`) and forgets the run,
  so the re-sent `chat.send` starts it afresh (then it echoes);
- "!crosstalk": before its own reply, emits events of another session and of a stale run in this one;
- "!tool": `agent` tool events (stream "item" and "tool"), then the reply;
- "!steady N": streams "w1 w2 … wN", one word every 20 ms, then `final`.

`python -m tests.bridge.fake_gateway PORT` serves it as a process of its own (token from
`OPENCLAW_GATEWAY_TOKEN`) until it is stopped, so a test can kill it like the real gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

PROVIDER_ERROR = (
    "⚠️ stub/stub-model request failed (provider internal error, HTTP 500). "
    "This is usually temporary — try again shortly."
)
CLIENT_IDS = {
    "webchat-ui",
    "openclaw-control-ui",
    "openclaw-browser-copilot",
    "openclaw-tui",
    "webchat",
    "cli",
    "gateway-client",
    "openclaw-macos",
    "openclaw-linux",
    "openclaw-ios",
    "openclaw-watchos",
    "openclaw-android",
    "node-host",
    "openclaw-worker",
    "test",
    "fingerprint",
    "openclaw-probe",
}
CLIENT_MODES = {"webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"}
CONNECT_KEYS = {
    "minProtocol",
    "maxProtocol",
    "client",
    "caps",
    "commands",
    "computerUse",
    "permissions",
    "pathEnv",
    "role",
    "scopes",
    "modelCatalog",
    "device",
    "auth",
    "locale",
    "userAgent",
}
CLIENT_KEYS = {
    "id",
    "displayName",
    "version",
    "buildId",
    "platform",
    "deviceFamily",
    "modelIdentifier",
    "timeZone",
    "mode",
    "instanceId",
}
OTHER_SESSION = "agent:main:web:someone-else"


@dataclass
class FakeRun:
    """One run the fake gateway is playing (it outlives the connection that started it, like the real one)."""

    run_id: str
    session_key: str
    message: str
    idempotency_key: str
    text: str = ""
    seq: int = 0
    done: bool = False
    state: str | None = None
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    resent: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class Received:
    """A frame the fake received, with the number of the connection it came on (1-based)."""

    connection: int
    frame: dict[str, Any]


class FakeGateway:
    """A protocol v4 gateway on 127.0.0.1 with scripted runs; use as `async with FakeGateway() as gw`."""

    def __init__(self, token: str = "gateway-secret-token", *, starting_connects: int = 0) -> None:
        self.token = token
        self.protocol = 4
        self.retry_after_ms = 20
        self.starting_until = starting_connects  # connections numbered up to this answer UNAVAILABLE
        self.received: list[Received] = []
        self.connects = 0
        self.origins: list[str | None] = []
        self.runs: dict[str, FakeRun] = {}  # by idempotency key
        self.forgotten: set[str] = set()  # idempotency keys of runs lost in a simulated crash
        self.overlapping_sends: list[str] = []  # session keys that got a chat.send while a run was active
        self.transcripts: dict[str, list[dict[str, Any]]] = {}
        self._active: dict[str, FakeRun] = {}
        self._released: dict[str, asyncio.Event] = {}
        self._connections: dict[ServerConnection, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self.port = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, port: int = 0) -> FakeGateway:
        """Listen on 127.0.0.1 (port 0: any free port)."""
        self._server = await serve(
            self._handle, "127.0.0.1", port, compression=None, max_size=None, process_request=_readyz
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening, close every connection and end every run."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def __aenter__(self) -> FakeGateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------------ test helpers

    def requests(self, method: str, session_key: str | None = None) -> list[dict[str, Any]]:
        """Params of every request of that method received (optionally for one session), in order."""
        return [
            r.frame.get("params", {})
            for r in self.received
            if r.frame.get("method") == method
            and (session_key is None or r.frame.get("params", {}).get("sessionKey") == session_key)
        ]

    def release(self, session_key: str) -> None:
        """Let a "!hold" run of that session answer."""
        self._released.setdefault(session_key, asyncio.Event()).set()

    def active(self, session_key: str) -> FakeRun | None:
        """The run in progress in that session, if any."""
        return self._active.get(session_key)

    async def until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until predicate() holds (fails the test after a generous timeout)."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)

    async def drop_connections(self, code: int | None = 1012, *, announce: bool = True) -> None:
        """Close every connection as a restarting gateway does (`shutdown`, close 1012); None: cut TCP."""
        if announce and code is not None:
            await self._broadcast("shutdown", {"reason": "gateway stopping", "restartExpectedMs": 1000})
        for connection in list(self._connections):
            self._connections.pop(connection, None)
            if code is None:
                connection.transport.abort()  # a killed process sends no close frame (the client sees 1006)
            else:
                await connection.close(code, "service restart")

    # ------------------------------------------------------------------------------ protocol

    async def _handle(self, connection: ServerConnection) -> None:
        self.connects += 1
        number = self.connects
        origin = connection.request.headers.get("Origin") if connection.request is not None else None
        self.origins.append(origin)
        try:
            await connection.send(
                json.dumps(
                    {
                        "type": "event",
                        "event": "connect.challenge",
                        "payload": {"nonce": str(uuid.uuid4()), "ts": 1, "capabilities": []},
                    }
                )
            )
            first = self._record(number, await connection.recv())
            if first.get("type") != "req" or first.get("method") != "connect":
                await connection.close(1008, "connect first")
                return
            refusal = self._refusal(first.get("params"), origin, number)
            if refusal is not None:
                error, close_code = refusal
                await self._respond_error(connection, first, error)
                await connection.close(close_code, error["message"][:100])
                return
            await self._respond(connection, first, self._hello())
            self._connections[connection] = 0
            # Keepalive noise the client must ignore.
            await self._send_event(connection, "tick", {"ts": 1})
            await self._send_event(connection, "health", {"ok": True})
            await self._send_event(connection, "presence", {"clients": 1})
            async for raw in connection:
                frame = self._record(number, raw)
                if frame.get("type") == "req":
                    await self._request(connection, frame)
        except ConnectionClosed:
            pass
        finally:
            self._connections.pop(connection, None)

    def _record(self, number: int, raw: str | bytes) -> dict[str, Any]:
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        self.received.append(Received(number, frame))
        return frame

    def _refusal(self, params: Any, origin: str | None, number: int) -> tuple[dict[str, Any], int] | None:
        """The error and close code the real gateway answers to this connect, or None to accept it."""
        if not isinstance(params, dict) or set(params) - CONNECT_KEYS:
            return _invalid("invalid connect params: must NOT have additional properties"), 1008
        client = params.get("client")
        if not isinstance(client, dict) or set(client) - CLIENT_KEYS:
            return _invalid("invalid connect params: at /client: must NOT have additional properties"), 1008
        if client.get("id") not in CLIENT_IDS:
            return _invalid(
                "invalid connect params: at /client/id: must be equal to one of the allowed values"
            ), 1008
        if client.get("mode") not in CLIENT_MODES:
            return _invalid(
                "invalid connect params: at /client/mode: must be equal to one of the allowed values"
            ), 1008
        if origin is not None:
            return {
                "code": "INVALID_REQUEST",
                "message": "origin missing or invalid",
                "details": {"code": "CONTROL_UI_ORIGIN_NOT_ALLOWED"},
            }, 1008
        low, high = params.get("minProtocol"), params.get("maxProtocol")
        if not (isinstance(low, int) and isinstance(high, int) and low <= self.protocol <= high):
            return {
                "code": "INVALID_REQUEST",
                "message": "protocol mismatch",
                "details": {
                    "code": "PROTOCOL_MISMATCH",
                    "clientMinProtocol": low,
                    "clientMaxProtocol": high,
                    "expectedProtocol": self.protocol,
                },
            }, 1002
        if number <= self.starting_until:
            return {
                "code": "UNAVAILABLE",
                "message": "gateway starting; retry shortly",
                "retryable": True,
                "retryAfterMs": self.retry_after_ms,
                "details": {"reason": "startup-sidecars"},
            }, 1013
        auth = params.get("auth")
        if not isinstance(auth, dict) or auth.get("token") != self.token:
            return {
                "code": "INVALID_REQUEST",
                "message": "unauthorized: gateway token mismatch (set the gateway token on the client)",
                "details": {
                    "code": "AUTH_TOKEN_MISMATCH",
                    "authReason": "token_mismatch",
                    "canRetryWithDeviceToken": False,
                },
            }, 1008
        return None

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello-ok",
            "protocol": self.protocol,
            "server": {"version": "fake-2026.9.6", "connId": str(uuid.uuid4())},
            "features": {"methods": ["chat.send", "chat.abort", "chat.history"], "events": ["chat", "agent"]},
            "snapshot": {"sessionDefaults": {"defaultAgentId": "main", "mainSessionKey": "agent:main:main"}},
            "auth": {"method": "token", "role": "operator", "scopes": ["operator.read", "operator.write"]},
            "policy": {"maxPayload": 26214400, "tickIntervalMs": 30000},
        }

    async def _request(self, connection: ServerConnection, frame: dict[str, Any]) -> None:
        params = frame.get("params") if isinstance(frame.get("params"), dict) else {}
        assert isinstance(params, dict)
        method = frame.get("method")
        if method == "chat.send":
            await self._chat_send(connection, frame, params)
        elif method == "chat.abort":
            run = self._active.get(str(params.get("sessionKey")))
            if run is not None and params.get("runId") in (None, run.run_id):
                run.aborted.set()
                await self._respond(connection, frame, {"ok": True, "aborted": True, "runIds": [run.run_id]})
            else:
                await self._respond(connection, frame, {"ok": True, "aborted": False, "runIds": []})
        elif method == "chat.history":
            key = str(params.get("sessionKey"))
            limit = params["limit"] if isinstance(params.get("limit"), int) else 20
            messages = self.transcripts.get(key, [])[-limit:]
            await self._respond(connection, frame, {"sessionKey": key, "messages": messages})
        else:
            await self._respond_error(connection, frame, _invalid(f"unknown method: {method}"))

    async def _chat_send(
        self, connection: ServerConnection, frame: dict[str, Any], params: dict[str, Any]
    ) -> None:
        key, message, idempotency_key = (
            params.get("sessionKey"),
            params.get("message"),
            params.get("idempotencyKey"),
        )
        if not (isinstance(key, str) and isinstance(message, str) and isinstance(idempotency_key, str)):
            await self._respond_error(connection, frame, _invalid("invalid chat.send params"))
            return
        # Like OpenClaw: the key is lower-cased, and its events carry the lower-cased key.
        key = key.lower()
        if not key.startswith("agent:main:"):
            agent = key.split(":")[1] if key.count(":") >= 2 else key
            await self._respond_error(
                connection, frame, _invalid(f'Agent "{agent}" no longer exists in configuration')
            )
            return
        known = self.runs.get(idempotency_key)
        if known is not None:
            await self._respond(
                connection, frame, {"runId": known.run_id, "status": "ok" if known.done else "in_flight"}
            )
            known.resent.set()
            return
        run = FakeRun(str(uuid.uuid4()), key, message, idempotency_key)
        self.runs[idempotency_key] = run
        self.transcripts.setdefault(key, []).append(
            {
                "role": "user",
                "content": [{"type": "text", "text": message}],
                "__openclaw": {"idempotencyKey": f"{idempotency_key}:user"},  # as the real gateway stores it
            }
        )
        busy = self._active.get(key)
        if busy is not None:
            # What the real gateway does in its default "steer" mode: the new run ends at once without a
            # message and its text lands in the active run's answer.
            self.overlapping_sends.append(key)
            await self._respond(connection, frame, {"runId": run.run_id, "status": "started"})
            busy.message += f"\n\n{message}"
            await self._finish(run, "final", message=None)
            return
        self._active[key] = run
        # A status event may reach the client before the ack: the client must buffer it.
        await self._chat(run, "status", phase="preparing_workspace")
        await self._respond(connection, frame, {"runId": run.run_id, "status": "started"})
        task = asyncio.create_task(self._play(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------------ scripted runs

    async def _play(self, run: FakeRun) -> None:
        message = run.message
        if message.startswith("!error"):
            await self._finish(run, "error", errorMessage=PROVIDER_ERROR, errorKind="unknown")
        elif message.startswith(("!slow", "!steady")):
            await self._slow(run)
        elif message.startswith("!hold"):
            released = self._released.setdefault(run.session_key, asyncio.Event())
            await _first(released.wait(), run.aborted.wait())
            if run.aborted.is_set():
                await self._finish(run, "aborted", stopReason="rpc")
            else:
                released.clear()
                await self._stream(run, f"Held: {run.message}")
                await self._finish(run, "final")
        elif message.startswith("!replace"):
            await self._delta(run, "Helo")
            await self._delta(run, "Hello", replace=True)
            await self._delta(run, " there")
            await self._finish(run, "final")
        elif message.startswith("!drop-finish"):
            await self._delta(run, "part one, ")
            run.text += "part two."
            # It ends while the client is away: the `final` event reaches nobody.
            await self._finish(run, "final", silent=True)
            await self.drop_connections()
        elif message.startswith("!drop-forget") and run.idempotency_key not in self.forgotten:
            await self._delta(run, "doomed ")
            # The gateway process dies: the run and its idempotency record vanish with it.
            self.forgotten.add(run.idempotency_key)
            self._active.pop(run.session_key, None)
            del self.runs[run.idempotency_key]
            await self.drop_connections(None)
        elif message == "!drop":
            await self._delta(run, "part one, ")
            await self._delta(run, "part two, ")
            await self.drop_connections()
            await self._delta(run, "part three, ")  # nobody is connected: this one is lost
            await run.resent.wait()
            await self._delta(run, "part four")
            await self._finish(run, "final")
        elif message.startswith("!crosstalk"):
            await self._broadcast(
                "chat",
                {"runId": "other-run", "sessionKey": OTHER_SESSION, "state": "delta", "deltaText": "LEAK"},
            )
            await self._broadcast(
                "chat",
                {"runId": "stale-run", "sessionKey": run.session_key, "state": "delta", "deltaText": "STALE"},
            )
            await self._broadcast(
                "chat",
                {"runId": "stale-run", "sessionKey": run.session_key, "state": "final", "message": None},
            )
            await self._broadcast(
                "chat",
                {
                    "runId": "other-run",
                    "sessionKey": OTHER_SESSION,
                    "state": "final",
                    "message": _assistant("LEAK"),
                },
            )
            await self._stream(run, "Only mine")
            await self._finish(run, "final")
        elif message.startswith("!tool"):
            tool = {"toolCallId": "call_1", "name": "ls"}
            await self._agent(run, "item", {**tool, "kind": "tool", "phase": "start", "status": "running"})
            await self._agent(run, "tool", {**tool, "phase": "start", "args": {"path": "."}})
            await self._agent(run, "tool", {**tool, "phase": "result", "isError": False})
            await self._agent(run, "assistant", {"text": "x", "delta": "x"})
            await self._stream(run, "The tool ran fine.")
            await self._finish(run, "final")
        else:
            await self._chat(run, "status", phase="starting_model")
            await self._stream(run, f"Echo: {message}")
            await self._finish(run, "final")

    async def _slow(self, run: FakeRun) -> None:
        if run.message.startswith("!steady"):
            words = int(run.message.split()[1])
            for index in range(1, words + 1):
                await self._delta(run, f"w{index}" if index == words else f"w{index} ")
                await asyncio.sleep(0.02)
            await self._finish(run, "final")
            return
        for index in range(100_000):
            if run.aborted.is_set():
                await self._finish(run, "aborted", stopReason="rpc")
                return
            await self._delta(run, f"tok{index} ")
            await asyncio.sleep(0.01)
        await self._finish(run, "final")

    async def _stream(self, run: FakeRun, reply: str) -> None:
        words = reply.split(" ")
        for index, word in enumerate(words):
            await self._delta(run, word if index == len(words) - 1 else word + " ")

    async def _delta(self, run: FakeRun, piece: str, *, replace: bool = False) -> None:
        run.text = piece if replace else run.text + piece
        extra: dict[str, Any] = {"replace": True} if replace else {}
        await self._chat(run, "delta", deltaText=piece, message=_assistant(run.text), **extra)

    async def _finish(self, run: FakeRun, state: str, *, silent: bool = False, **fields: Any) -> None:
        run.done, run.state = True, state
        if self._active.get(run.session_key) is run:
            del self._active[run.session_key]
        if state == "final" and "message" not in fields:
            fields["message"] = _assistant(run.text)
            fields.setdefault("stopReason", "stop")
            self.transcripts.setdefault(run.session_key, []).append(_assistant(run.text))
        elif state == "aborted":
            fields["message"] = _assistant(run.text)
        fields = {name: value for name, value in fields.items() if value is not None}
        if not silent:
            await self._chat(run, state, **fields)

    async def _chat(self, run: FakeRun, state: str, **fields: Any) -> None:
        run.seq += 1
        payload = {"runId": run.run_id, "sessionKey": run.session_key, "agentId": "main", "seq": run.seq}
        await self._broadcast("chat", {**payload, "state": state, **fields})

    async def _agent(self, run: FakeRun, stream: str, data: dict[str, Any]) -> None:
        run.seq += 1
        payload = {"runId": run.run_id, "sessionKey": run.session_key, "seq": run.seq, "isHeartbeat": False}
        await self._broadcast("agent", {**payload, "stream": stream, "data": data})

    async def _broadcast(self, event: str, payload: dict[str, Any]) -> None:
        # Like the real gateway: every operator connection gets every session's events.
        for connection in list(self._connections):
            await self._send_event(connection, event, payload)

    async def _send_event(self, connection: ServerConnection, event: str, payload: dict[str, Any]) -> None:
        seq = self._connections.get(connection, 0) + 1
        if connection in self._connections:
            self._connections[connection] = seq
        with contextlib.suppress(ConnectionClosed):
            await connection.send(
                json.dumps({"type": "event", "event": event, "payload": payload, "seq": seq})
            )

    async def _respond(
        self, connection: ServerConnection, frame: dict[str, Any], payload: dict[str, Any]
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            await connection.send(
                json.dumps({"type": "res", "id": frame.get("id"), "ok": True, "payload": payload})
            )

    async def _respond_error(
        self, connection: ServerConnection, frame: dict[str, Any], error: dict[str, Any]
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            await connection.send(
                json.dumps({"type": "res", "id": frame.get("id"), "ok": False, "error": error})
            )


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": 1}


def _invalid(message: str) -> dict[str, Any]:
    return {"code": "INVALID_REQUEST", "message": message}


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _readyz(connection: ServerConnection, request: Request) -> Response | None:
    """GET /readyz answers 200 as the real gateway's does once ready (this one is ready at once)."""
    if request.path != "/readyz":
        return None
    return connection.respond(HTTPStatus.OK, '{"ready":true,"failing":[]}\n')


async def _serve(port: int) -> None:
    """Serve on `port` until the process is stopped."""
    gateway = await FakeGateway(os.environ["OPENCLAW_GATEWAY_TOKEN"]).start(port)
    print(f"listening on {gateway.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))
