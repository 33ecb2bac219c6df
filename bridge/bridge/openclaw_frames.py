"""The OpenClaw gateway's wire frames, parsed once into typed values (docs/openclaw.md, Protocol).

The gateway sends JSON text frames: `res` answers one of our requests by id; `event` frames bring the
`connect.challenge` that opens a connection, the `chat` and `agent` events of every session's runs,
`shutdown` before the gateway restarts, and keepalive noise (tick, health, presence). The reader parses
each frame here, once, and everything after it works on these values. A frame the client has no use for,
or one without the ids it is routed by, parses to None and is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Keepalive noise, several a minute: nothing in it concerns a run.
DROPPED_EVENTS = frozenset({"tick", "health", "presence"})
TERMINAL_STATES = frozenset({"final", "error", "aborted"})


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
        details = _object(error.get("details"))
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


@dataclass(frozen=True)
class Response:
    """A `res` frame: the answer to our request `id`, with its payload, or the gateway's error."""

    id: str
    payload: dict[str, Any]
    error: GatewayError | None = None  # None when the gateway answered ok

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Response:
        """Parse a `res` frame (a missing or non-object payload reads as empty)."""
        return cls(
            id=str(frame.get("id")),
            payload=_object(frame.get("payload")),
            error=None if frame.get("ok") else GatewayError.from_frame(frame.get("error")),
        )


@dataclass(frozen=True)
class Challenge:
    """`connect.challenge`: the event a gateway opens every connection with, before the handshake."""


@dataclass(frozen=True)
class Shutdown:
    """`shutdown`: the gateway is about to close every connection (and, usually, restart)."""

    restart_expected_ms: float | None = None


@dataclass(frozen=True)
class ChatEvent:
    """A `chat` event: one step of a run's reply.

    `state` is "status" (a `phase` of the run's start), "delta" (`delta_text`, appended, or replacing the
    text when `replace`), or a terminal one: "final", "error" (`error_message`, `error_kind`), "aborted".
    `snapshot` is the text of the event's `message`: the whole reply so far, or at the end. A `final`
    without any `message` (`has_message` false) marks an input the gateway merged into another run.
    """

    run_id: str
    session_key: str
    state: str | None
    delta_text: str = ""
    replace: bool = False
    has_message: bool = False
    snapshot: str | None = None
    phase: str | None = None
    stop_reason: str | None = None
    error_message: str | None = None
    error_kind: str | None = None

    @property
    def terminal(self) -> bool:
        """True for the run's last event: final, error or aborted."""
        return self.state in TERMINAL_STATES

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChatEvent | None:
        """Parse a `chat` event's payload; None without the run id and session key it is routed by."""
        run_id, session_key = payload.get("runId"), payload.get("sessionKey")
        if not (isinstance(run_id, str) and isinstance(session_key, str)):
            return None
        message = payload.get("message")
        return cls(
            run_id=run_id,
            session_key=session_key,
            state=_text(payload.get("state")),
            delta_text=_text(payload.get("deltaText")) or "",
            replace=bool(payload.get("replace")),
            has_message=message is not None,
            snapshot=message_text(message),
            phase=_text(payload.get("phase")),
            stop_reason=_text(payload.get("stopReason")),
            error_message=_text(payload.get("errorMessage")),
            error_kind=_text(payload.get("errorKind")),
        )


@dataclass(frozen=True)
class AgentEvent:
    """An `agent` event: progress of a run's agent on one `stream` ("tool", "item", "assistant", ...).

    `payload` is the event as the gateway sent it: the run's tool progress is passed on unchanged.
    """

    run_id: str
    session_key: str
    stream: str | None
    payload: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AgentEvent | None:
        """Parse an `agent` event's payload; None without the run id and session key it is routed by."""
        run_id, session_key = payload.get("runId"), payload.get("sessionKey")
        if not (isinstance(run_id, str) and isinstance(session_key, str)):
            return None
        return cls(run_id, session_key, _text(payload.get("stream")), payload)


@dataclass(frozen=True)
class Hello:
    """The `hello-ok` payload that accepts a connect.

    The protocol spoken and the server's version, and the whole payload (policy, session defaults).
    """

    protocol: float | None
    server_version: str | None
    payload: dict[str, Any]

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Hello | None:
        """Parse a connect response's payload; None when it is not `hello-ok`."""
        if payload.get("type") != "hello-ok":
            return None
        protocol = payload.get("protocol")
        return cls(
            protocol=protocol if isinstance(protocol, int | float) else None,
            server_version=_text(_object(payload.get("server")).get("version")),
            payload=payload,
        )


@dataclass(frozen=True)
class ChatSendAck:
    """The gateway's answer to `chat.send`: the run's id and its status.

    "started", "in_flight" (a run with the same idempotency key is going on) or "ok" (it has ended).
    """

    run_id: str
    status: str | None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], idempotency_key: str) -> ChatSendAck:
        """Parse a `chat.send` response's payload (a run without an id goes by the idempotency key)."""
        return cls(str(payload.get("runId") or idempotency_key), _text(payload.get("status")))


Frame = Response | Challenge | Shutdown | ChatEvent | AgentEvent


def parse_frame(raw: str | bytes) -> Frame | None:
    """One frame as a typed value, or None for a frame the client ignores; ValueError when not JSON."""
    frame = json.loads(raw)
    if not isinstance(frame, dict):
        return None
    kind = frame.get("type")
    if kind == "res":
        return Response.from_frame(frame)
    if kind == "event":
        return _event(frame.get("event"), frame.get("payload"))
    return None


def _event(name: Any, payload: Any) -> Frame | None:
    if name == "connect.challenge":
        return Challenge()
    if not isinstance(name, str) or name in DROPPED_EVENTS or not isinstance(payload, dict):
        return None
    if name == "chat":
        return ChatEvent.from_payload(payload)
    if name == "agent":
        return AgentEvent.from_payload(payload)
    if name == "shutdown":
        restart = payload.get("restartExpectedMs")
        return Shutdown(restart if isinstance(restart, int | float) else None)
    return None


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


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
