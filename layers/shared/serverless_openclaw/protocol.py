"""Message shapes of the browser ↔ WebSocket API protocol and of the control plane ↔ bridge (DESIGN §5)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

MAX_MESSAGE_BYTES = 32 * 1024
"""Largest user message accepted, in UTF-8 bytes."""
MAX_FRAME_BYTES = 64 * 1024
"""Largest WebSocket frame body accepted before parsing."""

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
"""Client-chosen ids (conversation, client message): 1–64 safe characters, usable inside sort keys."""


class ProtocolError(ValueError):
    """A frame the server cannot accept; `code` is stable and goes to the client, `message` is readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class SendMessage(_Frame):
    """`{"action":"sendMessage","conversationId"?,"message","clientMessageId"}`."""

    action: Literal["sendMessage"]
    message: str
    client_message_id: Identifier = Field(alias="clientMessageId")
    conversation_id: Identifier | None = Field(default=None, alias="conversationId")


class GetStatus(_Frame):
    """`{"action":"getStatus"}`."""

    action: Literal["getStatus"]


class Stop(_Frame):
    """`{"action":"stop","conversationId"?}`: abort the running reply."""

    action: Literal["stop"]
    conversation_id: Identifier | None = Field(default=None, alias="conversationId")


class Ping(_Frame):
    """`{"action":"ping"}`."""

    action: Literal["ping"]


class Heartbeat(_Frame):
    """Agent connection only: `{"action":"heartbeat","busy":bool}`."""

    action: Literal["heartbeat"]
    busy: bool = False


ClientFrame = Annotated[SendMessage | GetStatus | Stop | Ping | Heartbeat, Field(discriminator="action")]
_frame_adapter: TypeAdapter[SendMessage | GetStatus | Stop | Ping | Heartbeat] = TypeAdapter(ClientFrame)
_ACTIONS = ("sendMessage", "getStatus", "stop", "ping", "heartbeat")


def parse_frame(body: str | None) -> SendMessage | GetStatus | Stop | Ping | Heartbeat:
    """Parse and validate one WebSocket frame; raise ProtocolError with a client-safe reason."""
    if not body:
        raise ProtocolError("bad_request", "Empty frame: send a JSON object with an 'action'.")
    if len(body.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"Frame larger than {MAX_FRAME_BYTES} bytes.")
    try:
        data = json.loads(body)
    except ValueError:
        raise ProtocolError("bad_request", "Frame is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "Frame must be a JSON object.")
    action = data.get("action")
    if action not in _ACTIONS:
        raise ProtocolError(
            "unknown_action", "Unknown action; expected one of: " + ", ".join(_ACTIONS[:4]) + "."
        )
    try:
        frame = _frame_adapter.validate_python(data)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in err["loc"][1:]) or "frame" for err in exc.errors()})
        raise ProtocolError(
            "bad_request", "Invalid or missing field(s): " + ", ".join(fields) + "."
        ) from None
    if isinstance(frame, SendMessage):
        check_message_text(frame.message)
    return frame


def check_message_text(text: str) -> None:
    """Reject empty or oversized user text (shared by every channel)."""
    if not text.strip():
        raise ProtocolError("empty_message", "The message is empty.")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"The message is larger than {MAX_MESSAGE_BYTES // 1024} KiB.")


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
