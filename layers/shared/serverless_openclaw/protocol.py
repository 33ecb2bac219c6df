"""Message shapes of the browser ↔ WebSocket API protocol and of the control plane ↔ bridge.

The frames are described in docs/architecture.md, Protocols.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from serverless_openclaw import untrusted

MAX_MESSAGE_BYTES = 32 * 1024
"""Largest user message accepted, in UTF-8 bytes."""
MAX_FRAME_BYTES = 64 * 1024
"""Largest WebSocket frame body accepted before parsing."""

IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
"""Client-chosen ids (conversation, client message): 1–64 safe characters, usable inside sort keys.
Always used with `fullmatch`: `$` would also match before a trailing newline."""


class ProtocolError(ValueError):
    """A frame the server cannot accept; `code` is stable and goes to the client, `message` is readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SendMessage:
    """`{"action":"sendMessage","conversationId"?,"message","clientMessageId","after"?}`.

    `after` is the clientMessageId of the message the sender typed just before this one in the same
    conversation, while that one is not acknowledged yet: this one is stored only after it.
    """

    message: str
    client_message_id: str
    conversation_id: str | None = None
    after: str | None = None


@dataclass(frozen=True, slots=True)
class GetStatus:
    """`{"action":"getStatus"}`."""


@dataclass(frozen=True, slots=True)
class Stop:
    """`{"action":"stop","conversationId"?}`: abort the running reply."""

    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """`{"action":"ping"}`."""


@dataclass(frozen=True, slots=True)
class Warm:
    """`{"action":"warm"}`: the person is about to talk (the chat opened, the composer focused): start
    the agent now if it is asleep, so it is awake by the time the message is sent."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Agent connection only: `{"action":"heartbeat","busy":bool}`."""

    busy: bool = False


Frame = SendMessage | GetStatus | Stop | Ping | Warm | Heartbeat
_CLIENT_ACTIONS = ("sendMessage", "getStatus", "stop", "ping", "warm")
_BARE_ACTIONS: dict[str, type[GetStatus | Ping | Warm]] = {"getStatus": GetStatus, "ping": Ping, "warm": Warm}
"""Actions whose frame carries no field but `action`."""


def is_identifier(value: object) -> bool:
    """True for a string usable as a conversation or client message id."""
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None


def parse_frame(body: str | None) -> Frame:
    """Parse and validate one WebSocket frame; raise ProtocolError with a client-safe reason.

    Hand-written rather than a pydantic model: the checks are few, and the import is paid on every
    cold start of the busiest function.
    """
    if not body:
        raise ProtocolError("bad_request", "Empty frame: send a JSON object with an 'action'.")
    try:
        data = untrusted.parse_json(body, max_bytes=MAX_FRAME_BYTES)
    except untrusted.InputTooLarge:
        raise ProtocolError("too_large", f"Frame larger than {MAX_FRAME_BYTES} bytes.") from None
    except untrusted.MalformedJson as exc:
        raise ProtocolError("bad_request", f"Frame is not acceptable JSON: {exc.reason}.") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "Frame must be a JSON object.")
    action = data.get("action")
    if action == "sendMessage":
        return _send_message(data)
    if isinstance(action, str) and action in _BARE_ACTIONS:
        return _BARE_ACTIONS[action]()
    if action == "stop":
        problems: list[str] = []
        conversation_id = _optional_identifier(data, "conversationId", problems)
        if problems:
            raise _invalid(problems)
        return Stop(conversation_id=conversation_id)
    if action == "heartbeat":
        busy = data.get("busy", False)
        if not isinstance(busy, bool):
            raise _invalid(["busy"])
        return Heartbeat(busy=busy)
    raise ProtocolError(
        "unknown_action", "Unknown action; expected one of: " + ", ".join(_CLIENT_ACTIONS) + "."
    )


def _send_message(data: dict[str, Any]) -> SendMessage:
    problems: list[str] = []
    text = _required_text(data, "message", problems)
    client_message_id = _required_identifier(data, "clientMessageId", problems)
    conversation_id = _optional_identifier(data, "conversationId", problems)
    after = _optional_identifier(data, "after", problems)
    if problems:
        raise _invalid(problems)
    check_message_text(text)
    return SendMessage(
        message=text, client_message_id=client_message_id, conversation_id=conversation_id, after=after
    )


# Each field reader returns the field's value, or records its name in `problems` (and returns a
# placeholder) so that one refusal can name every bad field at once.


def _required_text(data: dict[str, Any], name: str, problems: list[str]) -> str:
    value = data.get(name)
    if isinstance(value, str):
        return value
    problems.append(name)
    return ""


def _required_identifier(data: dict[str, Any], name: str, problems: list[str]) -> str:
    value = data.get(name)
    if isinstance(value, str) and is_identifier(value):
        return value
    problems.append(name)
    return ""


def _optional_identifier(data: dict[str, Any], name: str, problems: list[str]) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not is_identifier(value):
        problems.append(name)
        return None
    return str(value)


def _invalid(fields: list[str]) -> ProtocolError:
    return ProtocolError("bad_request", "Invalid or missing field(s): " + ", ".join(sorted(fields)) + ".")


def check_message_text(text: str) -> None:
    """Reject user text that is empty, oversized, or holds characters OpenClaw or the store refuse
    (every channel, before anything is stored: a message accepted here must be answerable)."""
    if not text.strip():
        raise ProtocolError("empty_message", "The message is empty.")
    try:
        untrusted.check_text(text, max_bytes=MAX_MESSAGE_BYTES)
    except untrusted.InputTooLarge:
        raise ProtocolError(
            "too_large", f"The message is larger than {MAX_MESSAGE_BYTES // 1024} KiB."
        ) from None
    except untrusted.InvalidText as exc:
        raise ProtocolError("invalid_text", f"The message cannot be sent: {exc.reason}.") from None


# Server → client frames. Plain dicts: they are serialised once and posted, never parsed back here.


def ack(
    client_message_id: str, message_id: str, conversation_id: str, *, duplicate: bool = False
) -> dict[str, Any]:
    """The message is stored and will be answered."""
    frame: dict[str, Any] = {
        "type": "ack",
        "clientMessageId": client_message_id,
        "messageId": message_id,
        "conversationId": conversation_id,
    }
    if duplicate:
        frame["duplicate"] = True
    return frame


def status(state: str, *, phase: str | None = None, eta_seconds: int | None = None) -> dict[str, Any]:
    """The agent's state: idle, starting, running or stopping."""
    frame: dict[str, Any] = {"type": "status", "status": state}
    if phase:
        frame["phase"] = phase
    if eta_seconds is not None:
        frame["etaSeconds"] = eta_seconds
    return frame


def warmed(status_frame: dict[str, Any], wake: str, error_text: str | None = None) -> dict[str, Any]:
    """The reply to `warm`: the current `status` frame plus what the frame did (`wake`: started, awake,
    off, held or failed) and, when a start failed or is held, why (`lastError`)."""
    frame = {**status_frame, "wake": wake}
    if error_text:
        frame["lastError"] = error_text
    return frame


def error(code: str, text: str, **extra: Any) -> dict[str, Any]:
    """A readable error for the user; `code` is stable for the client to branch on."""
    return {"type": "error", "code": code, "error": text, **extra}


def pong() -> dict[str, Any]:
    """Answer to ping."""
    return {"type": "pong"}


# Control plane → bridge (agent connection) commands.


def nudge() -> dict[str, Any]:
    """New Inbox items are waiting: drain now."""
    return {"type": "nudge"}


def abort(conversation_id: str | None) -> dict[str, Any]:
    """Abort the running reply (of one conversation, or whichever runs)."""
    frame: dict[str, Any] = {"type": "abort"}
    if conversation_id:
        frame["conversationId"] = conversation_id
    return frame


def shutdown(reason: str) -> dict[str, Any]:
    """Finish up, back up and exit: the task is being stopped."""
    return {"type": "shutdown", "reason": reason}
