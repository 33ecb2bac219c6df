"""The WebSocket `$default` route through its Lambda handler, driven by the events/ files."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import routing
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.protocol import MAX_MESSAGE_BYTES
from serverless_openclaw.store import intake as intake_store
from tests.conftest import load_event
from tests.fakes import FakeLauncher

CLIENT_CONN = "Aa1bCdEfIAMCJ3Q="
AGENT_CONN = "Bb2cAgentConn0Q="
USER = "user-a"


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_message.app")
    monkeypatch.setattr(module, "plane", cp)
    monkeypatch.setattr(module, "connections", module.ConnectionCache())
    cp.connections.put(Connection(CLIENT_CONN, USER, "client", cp.clock()))
    return module


def _call(app: ModuleType, lambda_context: Any, body: str | None, conn: str = CLIENT_CONN) -> dict[str, Any]:
    event = load_event("ws_message_send_message.json")
    event["requestContext"]["connectionId"] = conn  # type: ignore[index]
    event["body"] = body
    response = app.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    reply: dict[str, Any] = json.loads(response["body"])
    return reply


def _nothing_written(cp: ControlPlane) -> bool:
    return cp.inbox.items(USER) == [] and cp.conversations.conversations(USER).items == []


def test_send_message_acks_queues_and_starts(
    app: ModuleType, cp: ControlPlane, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given the sample sendMessage event from a signed-in client
    event = load_event("ws_message_send_message.json")

    # When it reaches the handler
    response = app.lambda_handler(event, lambda_context)

    # Then the client gets an ack with the stored ids and "starting", and the message is queued
    reply = json.loads(response["body"])
    assert reply["type"] == "ack" and reply["clientMessageId"] == "cm-0001"
    assert reply["conversationId"] == "01JDEMOCONVERSATION000001" and reply["status"] == "starting"
    (queued,) = cp.inbox.pending(USER, cp.clock())
    assert queued.message_id == reply["messageId"] and queued.text.startswith("Create test.md")
    assert len(launcher.launched) == 1


def test_resent_frame_is_acknowledged_as_duplicate(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    body = json.dumps({"action": "sendMessage", "message": "hi", "clientMessageId": "same"})
    first = _call(app, lambda_context, body)
    again = _call(app, lambda_context, body)
    assert again["duplicate"] is True and again["messageId"] == first["messageId"]
    assert len(cp.inbox.items(USER)) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "bad_request"),
        ("", "bad_request"),
        ("not json", "bad_request"),
        ("[1,2]", "bad_request"),
        ('"just a string"', "bad_request"),
        ('{"action":"dance"}', "unknown_action"),
        ('{"no_action":true}', "unknown_action"),
        ('{"action":"sendMessage","clientMessageId":"c1"}', "bad_request"),
        ('{"action":"sendMessage","message":42,"clientMessageId":"c1"}', "bad_request"),
        ('{"action":"sendMessage","message":"hi","clientMessageId":7}', "bad_request"),
        ('{"action":"sendMessage","message":"hi"}', "bad_request"),
        ('{"action":"sendMessage","message":"hi","clientMessageId":"has space"}', "bad_request"),
        (
            '{"action":"sendMessage","message":"hi","clientMessageId":"c1","conversationId":"../x"}',
            "bad_request",
        ),
        (
            '{"action":"sendMessage","message":"hi","clientMessageId":"c1","conversationId":["a"]}',
            "bad_request",
        ),
        ('{"action":"sendMessage","message":"   \\n\\t","clientMessageId":"c1"}', "empty_message"),
        ('{"action":"heartbeat","busy":true}', "unknown_action"),
    ],
)
def test_malformed_frames_get_an_error_and_write_nothing(
    app: ModuleType,
    cp: ControlPlane,
    launcher: FakeLauncher,
    lambda_context: Any,
    body: str | None,
    code: str,
) -> None:
    # When a bad frame arrives
    reply = _call(app, lambda_context, body)

    # Then an error frame comes back (never a 5xx), nothing is stored and nothing is started
    assert reply["type"] == "error" and reply["code"] == code and reply["error"]
    assert _nothing_written(cp)
    assert launcher.launched == []


def test_one_refusal_names_every_bad_field_of_a_message(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # When a message arrives with no text, a client id with a space and a conversation id with a slash
    body = json.dumps({"action": "sendMessage", "clientMessageId": "has space", "conversationId": "a/b"})
    reply = _call(app, lambda_context, body)

    # Then one error names all three, and nothing is stored
    assert reply["code"] == "bad_request"
    assert reply["error"] == "Invalid or missing field(s): clientMessageId, conversationId, message."
    assert _nothing_written(cp)


def test_oversized_message_and_frame_are_refused(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a message just over 32 KiB, and a frame over 64 KiB
    text = "é" * (MAX_MESSAGE_BYTES // 2 + 1)  # 2 bytes each in UTF-8
    big_message = json.dumps({"action": "sendMessage", "message": text, "clientMessageId": "c1"})
    big_frame = json.dumps({"action": "ping", "pad": "x" * 70_000})

    # Then both are refused as too large and nothing is written
    assert _call(app, lambda_context, big_message)["code"] == "too_large"
    assert _call(app, lambda_context, big_frame)["code"] == "too_large"
    assert _nothing_written(cp)


def test_message_of_exactly_the_limit_is_accepted(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    body = json.dumps({"action": "sendMessage", "message": "a" * MAX_MESSAGE_BYTES, "clientMessageId": "c1"})
    assert _call(app, lambda_context, body)["type"] == "ack"


def test_binary_frame_is_refused(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    event = load_event("ws_message_ping.json")
    event["isBase64Encoded"] = True
    reply = json.loads(app.lambda_handler(event, lambda_context)["body"])
    assert reply["type"] == "error"


def test_unknown_connection_is_refused(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    body = json.dumps({"action": "sendMessage", "message": "hi", "clientMessageId": "c1"})
    reply = _call(app, lambda_context, body, conn="never-connected")
    assert reply["code"] == "unauthorized"
    assert _nothing_written(cp)


def test_ping_and_status(app: ModuleType, lambda_context: Any) -> None:
    assert app.lambda_handler(load_event("ws_message_ping.json"), lambda_context)["body"] == '{"type":"pong"}'
    status = json.loads(app.lambda_handler(load_event("ws_message_get_status.json"), lambda_context)["body"])
    assert status == {"type": "status", "status": "idle"}


def test_status_while_starting_has_phase_and_eta(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    routing.request_start(cp, USER)
    cp.clock.advance(15)  # type: ignore[attr-defined]
    status = json.loads(app.lambda_handler(load_event("ws_message_get_status.json"), lambda_context)["body"])
    # Provisioning (20 % of the default 45 s) is overdue: the ETA holds at the later phases' 80 %
    assert status == {
        "type": "status",
        "status": "starting",
        "phase": "provisioning",
        "etaSeconds": 36,
        "usualSeconds": 45,
        "elapsedSeconds": 15,
    }


def test_stop_without_an_agent_reports_nothing_aborted(app: ModuleType, lambda_context: Any) -> None:
    reply = json.loads(app.lambda_handler(load_event("ws_message_stop.json"), lambda_context)["body"])
    assert reply == {"type": "ack", "action": "stop", "aborted": False}


def _running_agent(cp: ControlPlane) -> str:
    outcome = routing.request_start(cp, USER)
    assert outcome.task_arn
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock()) is not None
    assert cp.task_state.attach_agent(USER, outcome.task_arn, AGENT_CONN, cp.clock())
    cp.connections.put(Connection(AGENT_CONN, USER, "agent", cp.clock(), task_arn=outcome.task_arn))
    return outcome.task_arn


def test_agent_heartbeat_updates_task_state(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    # Given a running agent
    _running_agent(cp)
    cp.clock.advance(30)  # type: ignore[attr-defined]

    # When its bridge heartbeats as busy
    reply = json.loads(app.lambda_handler(load_event("ws_message_heartbeat.json"), lambda_context)["body"])

    # Then the row shows it alive and busy
    assert reply == {"type": "heartbeat", "accepted": True}
    state = cp.task_state.get(USER)
    assert state.busy and state.heartbeat_at == cp.clock()


def test_heartbeat_from_a_superseded_task_is_refused(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given an agent connection of a task the row no longer references
    _running_agent(cp)
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.IDLE, cp.clock(), remove=("taskArn",)) is not None
    cp.clock.advance(30)  # type: ignore[attr-defined]

    # When it heartbeats
    reply = json.loads(app.lambda_handler(load_event("ws_message_heartbeat.json"), lambda_context)["body"])

    # Then it is told so, and the row is not revived
    assert reply == {"type": "heartbeat", "accepted": False}
    assert cp.task_state.get(USER).heartbeat_at != cp.clock()


def test_while_openclaw_restarts_the_status_and_acks_say_so_with_an_eta(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a running agent whose bridge says its OpenClaw is restarting, back in about 40 s
    task_arn = _running_agent(cp)
    assert cp.task_state.mark_restarting(USER, task_arn, cp.clock() + 40)
    cp.clock.advance(10)  # type: ignore[attr-defined]

    # When a tab asks for the status, and sends a message meanwhile
    status = json.loads(app.lambda_handler(load_event("ws_message_get_status.json"), lambda_context)["body"])
    body = json.dumps({"action": "sendMessage", "message": "still there?", "clientMessageId": "c-r1"})
    ack = _call(app, lambda_context, body)

    # Then both say the agent is (re)starting, not that it runs, with the time left
    assert status == {"type": "status", "status": "starting", "phase": "restarting", "etaSeconds": 30}
    assert ack["type"] == "ack" and ack["status"] == "starting"

    # When the bridge says OpenClaw is back
    assert cp.task_state.mark_restarting(USER, task_arn, None)
    # Then the status is running again
    status = json.loads(app.lambda_handler(load_event("ws_message_get_status.json"), lambda_context)["body"])
    assert status == {"type": "status", "status": "running"}
    # And a task the row does not name cannot say it restarts
    assert not cp.task_state.mark_restarting(USER, task_arn + "-old", cp.clock() + 40)
    assert cp.task_state.get(USER).restarting_until is None


def test_agent_connection_cannot_send_user_messages(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    _running_agent(cp)
    body = json.dumps({"action": "sendMessage", "message": "injected", "clientMessageId": "c1"})
    reply = _call(app, lambda_context, body, conn=AGENT_CONN)
    assert reply["code"] == "unknown_action"
    assert _nothing_written(cp)


def test_storage_failure_tells_the_client_to_retry(
    app: ModuleType, cp: ControlPlane, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given DynamoDB fails the write
    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("throttled")

    monkeypatch.setattr(cp.intake, "accept", fail)
    body = json.dumps({"action": "sendMessage", "message": "hi", "clientMessageId": "c1"})

    # Then the client is told it was not stored (so it resends), never acked
    reply = _call(app, lambda_context, body)
    assert reply["type"] == "error" and reply["code"] == "not_stored" and reply["retryable"] is True


def _send(text: str, client_message_id: str, after: str | None = None) -> str:
    frame = {
        "action": "sendMessage",
        "message": text,
        "clientMessageId": client_message_id,
        "conversationId": "c1",
    }
    if after:
        frame["after"] = after
    return json.dumps(frame)


def test_a_message_that_overtook_the_one_typed_before_it_is_refused_until_that_one_is_stored(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a tab that typed "one" then "two", and "two" reached the server first
    early = _call(app, lambda_context, _send("two", "cm-2", after="cm-1"))

    # Then "two" is refused, retryably, naming the message it waits for, and nothing is written
    assert early["type"] == "error" and early["code"] == "out_of_order" and early["retryable"] is True
    assert early["clientMessageId"] == "cm-2" and early["after"] == "cm-1"
    assert _nothing_written(cp)

    # When "one" arrives and the tab sends "two" again after its ack
    one = _call(app, lambda_context, _send("one", "cm-1"))
    two = _call(app, lambda_context, _send("two", "cm-2", after="cm-1"))

    # Then both are stored, in typed order: the queue, the history and the ids agree
    assert one["type"] == "ack" and two["type"] == "ack" and one["messageId"] < two["messageId"]
    assert [i.text for i in cp.inbox.pending(USER, cp.clock())] == ["one", "two"]
    history = cp.conversations.messages(USER, "c1").items
    assert [m["content"] for m in reversed(history)] == ["one", "two"]


def test_a_message_whose_id_was_taken_before_its_predecessor_was_stored_is_refused(
    app: ModuleType, cp: ControlPlane, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given "one" stored, and "two" whose request took its id before that (the requests raced)
    _call(app, lambda_context, _send("one", "cm-1"))
    monkeypatch.setattr(intake_store, "new_id", lambda: "00000000000000000000000000")

    # When "two" is stored
    reply = _call(app, lambda_context, _send("two", "cm-2", after="cm-1"))

    # Then it is refused rather than listed before "one"; only "one" is queued
    assert reply["code"] == "out_of_order"
    assert [i.text for i in cp.inbox.items(USER)] == ["one"]


def test_a_resent_message_that_was_stored_is_a_duplicate_even_with_after(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given "one" and "two" stored in order, the ack of "two" lost
    _call(app, lambda_context, _send("one", "cm-1"))
    first = _call(app, lambda_context, _send("two", "cm-2", after="cm-1"))

    # When the tab sends "two" again, still naming "one"
    again = _call(app, lambda_context, _send("two", "cm-2", after="cm-1"))

    # Then it is the same stored message
    assert again["duplicate"] is True and again["messageId"] == first["messageId"]
    assert len(cp.inbox.items(USER)) == 2


def test_after_must_be_an_identifier(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    reply = _call(app, lambda_context, _send("two", "cm-2", after="not an id!"))
    assert reply["code"] == "bad_request" and "after" in reply["error"]
    assert _nothing_written(cp)
