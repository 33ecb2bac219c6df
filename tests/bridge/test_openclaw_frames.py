"""The gateway's wire frames as the client reads them: what it keeps of each, and what it ignores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.openclaw_frames import (
    AgentEvent,
    Challenge,
    ChatEvent,
    ChatSendAck,
    Hello,
    Response,
    Shutdown,
    parse_frame,
)

ALICE = "agent:main:conversation:alice"


def event(name: str, payload: Any) -> str:
    return json.dumps({"type": "event", "event": name, "payload": payload, "seq": 1})


def test_a_response_carries_its_payload() -> None:
    frame = parse_frame(json.dumps({"type": "res", "id": "r1", "ok": True, "payload": {"runId": "x"}}))
    assert frame == Response("r1", {"runId": "x"})


def test_a_refusal_carries_the_specific_code_and_retry_hint() -> None:
    # Given a gateway that is still starting
    raw = json.dumps(
        {
            "type": "res",
            "id": "r1",
            "ok": False,
            "error": {
                "code": "UNAVAILABLE",
                "message": "gateway starting; retry shortly",
                "retryAfterMs": 250,
                "details": {"code": "STARTING"},
            },
        }
    )

    # When its answer is read
    frame = parse_frame(raw)

    # Then the error says what happened, that it is worth retrying, and when
    assert isinstance(frame, Response) and frame.error is not None
    assert (frame.error.code, frame.error.message) == ("STARTING", "gateway starting; retry shortly")
    assert frame.error.retryable
    assert frame.error.retry_after == 0.25
    assert frame.payload == {}


def test_a_refusal_without_an_error_object_is_still_an_error() -> None:
    frame = parse_frame(json.dumps({"type": "res", "id": "r1", "ok": False}))
    assert isinstance(frame, Response) and frame.error is not None
    assert frame.error.code == "UNKNOWN"
    assert not frame.error.retryable


def test_a_chat_event_keeps_every_field_a_run_needs() -> None:
    # Given a delta event whose message holds the reply so far
    payload = {
        "runId": "run-1",
        "sessionKey": ALICE,
        "state": "delta",
        "deltaText": "lo",
        "replace": True,
        "message": {
            "role": "assistant",
            "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
        },
    }

    # When / Then
    assert parse_frame(event("chat", payload)) == ChatEvent(
        "run-1", ALICE, "delta", delta_text="lo", replace=True, has_message=True, snapshot="Hello"
    )


def test_a_final_without_a_message_says_so() -> None:
    frame = parse_frame(event("chat", {"runId": "r", "sessionKey": ALICE, "state": "final", "message": None}))
    assert frame == ChatEvent("r", ALICE, "final", has_message=False, snapshot=None)
    assert isinstance(frame, ChatEvent) and frame.terminal


def test_an_agent_event_is_kept_whole() -> None:
    payload = {"runId": "r", "sessionKey": ALICE, "stream": "tool", "data": {"name": "ls"}}
    assert parse_frame(event("agent", payload)) == AgentEvent("r", ALICE, "tool", payload)


def test_the_connection_events_are_recognised() -> None:
    assert parse_frame(event("connect.challenge", {"nonce": "n"})) == Challenge()
    assert parse_frame(event("shutdown", {"restartExpectedMs": 1000})) == Shutdown(1000)


@pytest.mark.parametrize(
    "raw",
    [
        event("tick", {"ts": 1}),
        event("health", {"ok": True}),
        event("presence", {"clients": 1}),
        event("chat", {"sessionKey": ALICE, "state": "delta"}),
        event("chat", {"runId": "r", "state": "delta"}),
        event("agent", {"runId": 7, "sessionKey": ALICE}),
        event("chat", "not an object"),
        event("something.new", {"runId": "r", "sessionKey": ALICE}),
        json.dumps({"type": "event", "event": ["odd"], "payload": {}}),
        json.dumps({"type": "req", "id": "x", "method": "chat.send"}),
        json.dumps(["not", "an", "object"]),
    ],
)
def test_frames_of_no_use_to_the_client_are_ignored(raw: str) -> None:
    assert parse_frame(raw) is None


def test_a_frame_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_frame("{not json")


def test_hello_ok_gives_the_protocol_and_server_version() -> None:
    payload = {
        "type": "hello-ok",
        "protocol": 4,
        "server": {"version": "2026.9.6"},
        "policy": {"maxPayload": 1},
    }
    assert Hello.from_payload(payload) == Hello(4, "2026.9.6", payload)
    assert Hello.from_payload({"type": "something-else", "protocol": 4}) is None


def test_a_chat_send_answer_without_a_run_id_goes_by_the_idempotency_key() -> None:
    assert ChatSendAck.from_payload({"status": "started"}, "key-1") == ChatSendAck("key-1", "started")
    assert ChatSendAck.from_payload({"runId": "r", "status": "ok"}, "key-1") == ChatSendAck("r", "ok")
