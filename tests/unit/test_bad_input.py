"""Bad input at every edge of the control plane, one table per edge (issue 13).

Each case is input a client, a prober or a forged request can send: nesting thousands of levels deep,
NUL, lone UTF-16 surrogates, integers too large to store, NaN, ids with
a trailing newline. Each must be refused with a 4xx (or an `error` frame whose code is not retryable),
must write nothing to any table (Idempotency included), and must leave the edge usable: the next good
request on the same connection is answered.
"""

from __future__ import annotations

import base64
import importlib
import json
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import untrusted
from serverless_openclaw.auth import JwtVerifier
from serverless_openclaw.aws.clients import client
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.store import codec
from serverless_openclaw.telegram_bot import TelegramBot
from tests.conftest import load_event
from tests.unit.conftest_auth import SigningKey, StaticKeys, auth_config
from tests.unit.test_http_api import Api, cursor_for
from tests.unit.test_telegram_webhook import ALLOWED, RecordingBot, Telegram, secrets_in_ssm
from tests.unit.test_ws_connect import agent_event, client_event
from tests.unit.test_ws_message import AGENT_CONN as AGENT
from tests.unit.test_ws_message import _running_agent as running_agent

__all__ = ["secrets_in_ssm"]  # a fixture this module uses by name

CLIENT = "ClientConn0001Q="
USER = "user-a"
DEEP = 5000
"""Deeper than Python's recursion limit: `json.loads` raises RecursionError, not ValueError."""


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def snapshot(aws: dict[str, str]) -> dict[str, list[str]]:
    """Every item of every table (Idempotency included), in a comparable form."""
    dynamodb = client("dynamodb")
    return {
        table: sorted(
            json.dumps(codec.load(item), sort_keys=True, default=str)
            for item in dynamodb.scan(TableName=table)["Items"]
        )
        for table in aws.values()
    }


# ---------------------------------------------------------------------------------------- WebSocket


@pytest.fixture
def ws(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_message.app")
    monkeypatch.setattr(module, "plane", cp)
    monkeypatch.setattr(module, "connections", module.ConnectionCache())
    cp.connections.put(Connection(CLIENT, USER, "client", cp.clock()))
    return module


def frame(ws: ModuleType, lambda_context: Any, body: str, conn: str = CLIENT) -> dict[str, Any]:
    event = load_event("ws_message_send_message.json")
    event["requestContext"]["connectionId"] = conn  # type: ignore[index]
    event["body"] = body
    response = ws.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    reply: dict[str, Any] = json.loads(response["body"])
    return reply


def send(message: str, **extra: Any) -> str:
    """A sendMessage frame as a browser would write it (escapes included, so lone surrogates survive)."""
    return json.dumps({"action": "sendMessage", "message": message, "clientMessageId": "c1", **extra})


WS_CASES = [
    ("deep-nesting", '{"action":"ping","x":' + deep(DEEP) + "}", "bad_request"),
    ("deep-nesting-as-the-frame", deep(DEEP), "bad_request"),
    ("nesting-over-the-bound", '{"action":"ping","x":' + deep(40) + "}", "bad_request"),
    ("nul", send("hello\x00world"), "invalid_text"),
    ("lone-surrogate-escape", send("\ud800"), "bad_request"),
    ("lone-low-surrogate", send("a\udfffb"), "bad_request"),
    ("lone-surrogate-in-another-field", send("hi", note="\udbff"), "bad_request"),
    ("lone-surrogate-in-a-key", '{"action":"ping","\\ud800":1}', "bad_request"),
    ("raw-surrogate-character", '{"action":"ping","x":"\ud800"}', "bad_request"),
    ("nan", '{"action":"ping","x":NaN}', "bad_request"),
    ("infinity", '{"action":"ping","x":-Infinity}', "bad_request"),
    ("float-overflow", '{"action":"ping","x":1e400}', "bad_request"),
    ("huge-integer", '{"action":"ping","x":' + "9" * 40 + "}", "bad_request"),
    ("client-id-with-newline", send("hi", clientMessageId="c1\n"), "bad_request"),
    ("conversation-id-with-newline", send("hi", conversationId="conv\n"), "bad_request"),
    ("stop-id-with-newline", '{"action":"stop","conversationId":"conv\\n"}', "bad_request"),
]


@pytest.mark.parametrize(("body", "code"), [c[1:] for c in WS_CASES], ids=[c[0] for c in WS_CASES])
def test_bad_frames_get_a_non_retryable_error_write_nothing_and_the_connection_goes_on(
    ws: ModuleType, cp: ControlPlane, aws: dict[str, str], lambda_context: Any, body: str, code: str
) -> None:
    # Given a signed-in browser connection
    before = snapshot(aws)

    # When a bad frame arrives on it
    reply = frame(ws, lambda_context, body)

    # Then it is answered with an error frame the client must not retry, and nothing is written
    assert reply["type"] == "error" and reply["code"] == code and reply["error"]
    assert "retryable" not in reply
    assert snapshot(aws) == before
    # And the next good frame on the same connection is answered
    ack = frame(ws, lambda_context, send("and now a good one", clientMessageId="c2"))
    assert ack["type"] == "ack" and ack["clientMessageId"] == "c2"


@pytest.mark.parametrize(
    "text",
    [
        "tab\tnewline\ncarriage\r",
        "emoji 🦀 and é",
        "\u2028 and \x7f",
        "page one\x0cpage two",  # a form feed, as text pasted from a PDF carries
        "colour \x1b[31mred",  # OpenClaw takes control characters other than NUL
    ],
)
def test_text_with_allowed_characters_is_accepted(ws: ModuleType, lambda_context: Any, text: str) -> None:
    reply = frame(ws, lambda_context, send(text))
    assert reply["type"] == "ack"


def test_a_bad_heartbeat_is_refused_and_the_agent_connection_goes_on(
    ws: ModuleType, cp: ControlPlane, aws: dict[str, str], lambda_context: Any
) -> None:
    # Given a running agent's connection
    running_agent(cp)
    before = snapshot(aws)

    # When its frames are deeply nested or carry a lone surrogate
    for body in ('{"action":"heartbeat","busy":' + deep(DEEP) + "}", '{"action":"heartbeat","\\udc00":1}'):
        reply = frame(ws, lambda_context, body, conn=AGENT)
        # Then each is refused and TaskState is untouched
        assert reply["type"] == "error" and reply["code"] == "bad_request"
    assert snapshot(aws) == before
    # And a good heartbeat is still answered
    cp.clock.advance(30)  # type: ignore[attr-defined]
    assert frame(ws, lambda_context, '{"action":"heartbeat","busy":false}', conn=AGENT) == {
        "type": "heartbeat",
        "accepted": True,
    }
    assert cp.task_state.get(USER).status == Status.RUNNING


# ---------------------------------------------------------------------------------------- HTTP API


@pytest.fixture
def http(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> Api:
    module = importlib.import_module("functions.http_api.app")
    monkeypatch.setattr(module, "plane", cp)
    return Api(module, lambda_context)


def cursor_for_raw(text: str) -> str:
    """A cursor carrying any text, as a forger would make one."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _settings(raw: str) -> tuple[str, str, dict[str, str] | None, str | None]:
    return ("PUT", "/api/settings", None, raw)


def _listing(cursor: str) -> tuple[str, str, dict[str, str] | None, str | None]:
    return ("GET", "/api/conversations", {"cursor": cursor}, None)


HTTP_CASES = [
    ("settings-deep-nesting", _settings('{"timezone":' + deep(DEEP) + "}"), (400, "bad_request")),
    ("settings-nesting-over-the-bound", _settings('{"timezone":' + deep(40) + "}"), (400, "bad_request")),
    ("settings-lone-surrogate-value", _settings('{"timezone":"Europe/\\ud800"}'), (400, "bad_request")),
    ("settings-lone-surrogate-key", _settings('{"\\ud800":"x"}'), (400, "bad_request")),
    ("settings-nan", _settings('{"idleTimeoutMinutes":NaN}'), (400, "bad_request")),
    ("settings-float-overflow", _settings('{"idleTimeoutMinutes":1e999}'), (400, "bad_request")),
    ("settings-huge-integer", _settings('{"idleTimeoutMinutes":' + "1" * 40 + "}"), (400, "bad_request")),
    ("settings-model-with-newline", _settings('{"model":"openai/gpt-5\\n"}'), (400, "invalid_settings")),
    ("settings-model-with-nul", _settings('{"model":"openai/gpt\\u0000"}'), (400, "invalid_settings")),
    ("cursor-deep-nesting", _listing(cursor_for_raw(deep(700))), (400, "invalid_cursor")),
    (
        "cursor-lone-surrogate",
        _listing(cursor_for_raw('{"PK":"USER#6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b","SK":"CONV#\\ud800"}')),
        (400, "invalid_cursor"),
    ),
    ("cursor-not-ascii", _listing("é" * 8), (400, "invalid_cursor")),
    # Path ids outside the route's characters never reach a route (and so never reach the store).
    ("path-id-with-newline", ("GET", "/api/conversations/conv\n/messages", None, None), (404, "not_found")),
    ("path-id-with-nul", ("DELETE", "/api/conversations/conv\x00", None, None), (404, "not_found")),
]


@pytest.mark.parametrize(
    ("request_parts", "refusal"), [c[1:] for c in HTTP_CASES], ids=[c[0] for c in HTTP_CASES]
)
def test_bad_http_requests_are_400_write_nothing_and_the_api_goes_on(
    http: Api,
    aws: dict[str, str],
    request_parts: tuple[str, str, dict[str, str] | None, str | None],
    refusal: tuple[int, str],
) -> None:
    # Given a signed-in caller
    method, path, query, body = request_parts
    before = snapshot(aws)

    # When a bad request arrives
    status, answer = http.call(method, path, query=query, body=body)

    # Then it is a 4xx with a stable code, and nothing is written
    assert (status, answer["error"]) == refusal
    assert snapshot(aws) == before
    # And the next good request is answered
    assert http.call("PUT", "/api/settings", body={"timezone": "Asia/Tokyo"})[0] == 200


def test_a_good_cursor_still_pages(http: Api, cp: ControlPlane) -> None:
    # A well-formed cursor of the caller's own partition passes the stricter parser.
    cursor = cursor_for({"PK": "USER#6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b", "SK": "CONV#01J"})
    assert http.call("GET", "/api/conversations", query={"cursor": cursor})[0] == 200


# ---------------------------------------------------------------------------------------- Telegram


@pytest.fixture
def telegram() -> RecordingBot:
    return RecordingBot()


@pytest.fixture
def tg(
    cp: ControlPlane,
    secrets_in_ssm: None,
    telegram: RecordingBot,
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
) -> Telegram:
    module = importlib.import_module("functions.telegram_webhook.app")
    cp.cfg = replace(cp.cfg, telegram=replace(cp.cfg.telegram, allowed_user_ids=frozenset({ALLOWED})))
    bot = TelegramBot.from_plane(cp)
    bot.clock = cp.clock
    bot.bot.make = lambda token, base: telegram  # type: ignore[assignment,return-value]
    monkeypatch.setattr(module, "bot", bot)
    return Telegram(module, lambda_context)


def _update(text: str = "hi", **overrides: Any) -> str:
    """A raw update from the allowlisted user; `chat_id`, `from_id`, `message_id`, `update_id` override."""
    message = {
        "message_id": overrides.get("message_id", 7),
        "from": {"id": overrides.get("from_id", ALLOWED), "is_bot": False, "first_name": "Ada"},
        "chat": {"id": overrides.get("chat_id", ALLOWED), "type": "private"},
        "text": text,
    }
    message["from"].update(overrides.get("sender", {}))
    return json.dumps({"update_id": overrides.get("update_id", 12345), "message": message})


BIG = int("9" * 40)
TELEGRAM_REFUSED = [
    ("deep-nesting", '{"update_id":1,"message":' + deep(DEEP) + "}", 400),
    ("nesting-over-the-bound", '{"update_id":1,"x":' + deep(40) + "}", 400),
    ("lone-surrogate-text", _update("\ud800"), 400),
    ("lone-surrogate-name", _update("/link ABCD2345", sender={"first_name": "\udc00"}), 400),
    ("nan", '{"update_id":NaN}', 400),
    ("huge-chat-id", _update(chat_id=BIG), 400),
    ("huge-sender-id", _update(from_id=BIG), 400),
    ("huge-message-id", _update(message_id=BIG), 400),
    ("huge-update-id", _update(update_id=BIG), 400),
    ("chat-id-over-52-bits", _update(chat_id=2**52), 400),
    ("message-id-over-31-bits", _update(message_id=2**31), 400),
    ("update-id-over-52-bits", _update(update_id=2**52), 400),
    ("zero-message-id", _update(message_id=0), 400),
    ("invalid-utf8", None, 400),
]


@pytest.mark.parametrize(
    ("raw", "status"), [c[1:] for c in TELEGRAM_REFUSED], ids=[c[0] for c in TELEGRAM_REFUSED]
)
def test_impossible_telegram_updates_are_refused_and_write_nothing(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot, raw: str | None, status: int
) -> None:
    # Given the right secret and an update Telegram could never have sent
    before = snapshot(aws)

    # When it is posted
    if raw is None:
        event_status, body = _post_bytes(tg, b'{"update_id":1,"x":"\xff\xfe"}')
    else:
        event_status, body = tg.post(None, raw=raw)

    # Then it is refused with a 4xx, nothing is written and nobody is messaged
    assert event_status == status and body["error"]
    assert snapshot(aws) == before and telegram.sent == []
    # And the next real update is accepted
    assert tg.post(None, raw=_update("a good one", update_id=12346))[0] == 200


def _post_bytes(tg: Telegram, raw: bytes) -> tuple[int, Any]:
    event = load_event("telegram_webhook_message.json")
    event["headers"] = {"x-telegram-bot-api-secret-token": "webhook-secret_0123456789-abcdefghij"}
    event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    response = tg.app.lambda_handler(event, tg.lambda_context)
    return response["statusCode"], json.loads(response["body"])


@pytest.mark.parametrize("text", ["hello\x00world", "/link ABCD\x002345"])
def test_text_with_nul_is_refused_with_a_reply_and_nothing_stored(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot, text: str
) -> None:
    # Given the allowlisted user, and the right secret
    before = snapshot(aws)

    # When their message carries a NUL
    status, body = tg.post(None, raw=_update(text))

    # Then Telegram gets a 2xx (it redelivers anything else for hours), the user is told why once,
    # and nothing is stored or started
    assert status == 200 and body == {"ok": True, "refused": "invalid_text"}
    (reply,) = telegram.chat(ALLOWED)
    assert "NUL character" in reply
    assert snapshot(aws) == before
    # And their next message goes through
    assert tg.post(None, raw=_update("a good one", update_id=12346)) == (200, {"ok": True})


def test_a_strangers_bad_text_is_ignored_silently(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot
) -> None:
    before = snapshot(aws)
    status, _ = tg.post(None, raw=_update("\x00", from_id=777, chat_id=777))
    assert status == 200 and telegram.sent == [] and snapshot(aws) == before


@pytest.mark.parametrize("ids", [{"chat_id": 2**52 - 1}, {"message_id": 2**31 - 1}, {"update_id": 2**52 - 1}])
def test_the_largest_ids_telegram_sends_are_stored(
    tg: Telegram, cp: ControlPlane, ids: dict[str, int]
) -> None:
    # Given / When the allowlisted user writes from a chat (or with a message id) at Telegram's bound
    assert tg.post(None, raw=_update("hi", **ids)) == (200, {"ok": True})

    # Then the message is queued with its reply target intact
    (item,) = cp.inbox.items(f"telegram:{ALLOWED}")
    assert item.reply_to["chatId"] == ids.get("chat_id", ALLOWED)
    assert item.reply_to["messageId"] == ids.get("message_id", 7)


# ---------------------------------------------------------------------------------------- $connect


@pytest.fixture
def connect(cp: ControlPlane, pool_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_connect.app")
    monkeypatch.setattr(module, "plane", cp)
    monkeypatch.setattr(module, "verifier", JwtVerifier(auth_config(), jwks_client=StaticKeys([pool_key])))
    return module


def _token_with_header(header: str) -> str:
    encoded = base64.urlsafe_b64encode(header.encode()).decode().rstrip("=")
    return f"{encoded}.e30.c2ln"


CONNECT_CASES = [
    ("token-header-deep-nesting", lambda: client_event(_token_with_header('{"alg":' + deep(2500) + "}"))),
    ("token-header-lone-surrogate", lambda: client_event(_token_with_header('{"alg":"\\ud800"}'))),
    ("agent-user-lone-surrogate", lambda: agent_event(x_agent_user="user\ud800")),
    ("agent-user-nul", lambda: agent_event(x_agent_user="user\x00")),
    ("agent-task-arn-lone-surrogate", lambda: agent_event(x_agent_task_arn="arn\udfff")),
]


@pytest.mark.parametrize("make_event", [c[1] for c in CONNECT_CASES], ids=[c[0] for c in CONNECT_CASES])
def test_bad_connect_requests_are_401_and_write_nothing(
    connect: ModuleType, aws: dict[str, str], lambda_context: Any, make_event: Any
) -> None:
    # Given / When a connection attempt carries a malformed token or agent header
    before = snapshot(aws)
    response = connect.lambda_handler(make_event(), lambda_context)

    # Then it is refused like any bad credential (not a 500), and nothing is written
    assert response == {"statusCode": 401, "body": "Unauthorized"}
    assert snapshot(aws) == before


# ---------------------------------------------------------------------------------------- the parser's bounds


@pytest.mark.parametrize(
    ("raw", "accepted"),
    [
        (deep(untrusted.MAX_DEPTH), True),
        (deep(untrusted.MAX_DEPTH + 1), False),
        ('{"a":' * untrusted.MAX_DEPTH + "1" + "}" * untrusted.MAX_DEPTH, True),
        ('{"a":' * (untrusted.MAX_DEPTH + 1) + "1" + "}" * (untrusted.MAX_DEPTH + 1), False),
        (str(untrusted.MAX_INTEGER), True),
        (str(-untrusted.MAX_INTEGER), True),
        (str(untrusted.MAX_INTEGER + 1), False),
        ("1e308", True),
        ("1e309", False),
        ('"\\ud83e\\udd80"', True),  # a surrogate pair is one character (🦀)
        ('"\\udd80\\ud83e"', False),  # the same halves in the wrong order are two lone ones
        ('["' + "[" * 100 + '"]', True),  # brackets inside a string do not nest
    ],
)
def test_the_parser_accepts_up_to_its_bounds_and_no_further(raw: str, accepted: bool) -> None:
    if accepted:
        untrusted.parse_json(raw, max_bytes=1024)
    else:
        with pytest.raises(untrusted.MalformedJson):
            untrusted.parse_json(raw, max_bytes=1024)


def test_the_size_limit_counts_utf8_bytes() -> None:
    text = '"' + "é" * 511 + '"'  # 1,024 bytes in UTF-8
    assert untrusted.parse_json(text, max_bytes=1024) == "é" * 511
    with pytest.raises(untrusted.InputTooLarge):
        untrusted.parse_json(text.encode(), max_bytes=1023)
