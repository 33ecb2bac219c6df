"""The Telegram Bot API client: the retries Telegram asks for, markup fallback, replies shaped for it."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from serverless_openclaw.telegram import (
    MAX_MESSAGE_CHARS,
    TelegramClient,
    TelegramError,
    markdown_to_html,
    split_message,
)

TOKEN = "123456:secret-bot-token"


class ScriptedBotApi:
    """A transport that answers each call from a script and records what was asked."""

    def __init__(self, *answers: tuple[int, dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        self.calls.append((url.rsplit("/", 1)[-1], json.loads(body)))
        status, answer = self.answers.pop(0) if self.answers else (200, {"ok": True, "result": True})
        return status, json.dumps(answer).encode()


def ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def refused(status: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
    answer: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        answer["parameters"] = parameters
    return status, answer


def client(api: ScriptedBotApi, slept: list[float]) -> TelegramClient:
    return TelegramClient(TOKEN, api_base="http://telegram.invalid", transport=api, sleep=slept.append)


def test_a_429_waits_what_telegram_says_and_the_message_goes_out_once() -> None:
    # Given a Bot API that is rate-limiting the bot for 3 seconds
    api = ScriptedBotApi(
        refused(429, "Too Many Requests: retry after 3", retry_after=3), ok({"message_id": 7})
    )
    slept: list[float] = []

    # When a message is sent
    message_id = client(api, slept).send_message(42, "hello")

    # Then it waited exactly 3 s, retried once, and the message was sent once
    assert message_id == 7
    assert slept == [3.0]
    assert [name for name, _ in api.calls] == ["sendMessage", "sendMessage"]


def test_server_errors_are_retried_with_backoff_then_reported() -> None:
    api = ScriptedBotApi(*[refused(502, "Bad Gateway")] * 4)
    slept: list[float] = []
    with pytest.raises(TelegramError) as failed:
        client(api, slept).send_chat_action(42)
    assert failed.value.status == 502 and len(api.calls) == 4
    assert slept == [0.5, 1.0, 2.0]


def test_a_bad_request_is_not_retried_and_the_error_never_holds_the_token() -> None:
    api = ScriptedBotApi(refused(400, "Bad Request: chat not found"))
    with pytest.raises(TelegramError) as failed:
        client(api, []).send_message(42, "hello")
    assert len(api.calls) == 1
    assert "chat not found" in str(failed.value) and TOKEN not in str(failed.value)
    assert TOKEN not in repr(client(api, []))


def test_a_very_long_rate_limit_is_not_waited_out() -> None:
    api = ScriptedBotApi(refused(429, "Too Many Requests: retry after 600", retry_after=600))
    slept: list[float] = []
    with pytest.raises(TelegramError) as failed:
        client(api, slept).send_message(42, "hello")
    assert failed.value.retry_after == 600 and slept == []


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (200, b"<html>oops</html>", (502, "no description", None)),
        (200, b"", (502, "no description", None)),
        (200, b"[1, 2]", (502, "bad body", None)),
        (200, b'{"ok": true}', (502, "no description", None)),
        (200, b'{"ok": false, "result": 1, "description": "odd"}', (502, "odd", None)),
        (
            403,
            b'{"ok": false, "description": "Forbidden: bot was blocked by the user"}',
            (403, "Forbidden: bot was blocked by the user", None),
        ),
        (400, json.dumps({"ok": False, "description": "x" * 400}).encode(), (400, "x" * 300, None)),
        (
            429,
            b'{"ok": false, "description": "slow down", "parameters": {"retry_after": "3"}}',
            (429, "slow down", None),
        ),
        (429, b'{"ok": false, "description": "slow down", "parameters": 3}', (429, "slow down", None)),
        (429, b'{"ok": false, "parameters": {"retry_after": 1.5}}', (429, "no description", 1.5)),
        (503, b"\xff\xfe", (503, "no description", None)),
    ],
)
def test_what_a_failed_call_reports_whatever_telegram_answered(
    status: int, raw: bytes, expected: tuple[int, str, float | None]
) -> None:
    # Given a Bot API answering one call like this, and a client that tries once
    def answer(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        return status, raw

    telegram = TelegramClient(TOKEN, transport=answer, sleep=lambda _: None, attempts=1)

    # When a message is sent
    with pytest.raises(TelegramError) as failed:
        telegram.send_message(42, "hello")

    # Then the error says what Telegram said, and how long it asked to wait
    assert (failed.value.status, failed.value.description, failed.value.retry_after) == expected


def test_markup_telegram_refuses_falls_back_to_plain_text() -> None:
    # Given Telegram that cannot parse the HTML it is sent
    api = ScriptedBotApi(
        refused(400, "Bad Request: can't parse entities: unclosed tag"), ok({"message_id": 9})
    )

    # When a formatted reply is sent
    message_id = client(api, []).send_formatted(42, "**bold** and *it*")

    # Then the second attempt is the original text without parse_mode
    assert message_id == 9
    (_, first), (_, second) = api.calls
    assert first["parse_mode"] == "HTML" and first["text"] == "<b>bold</b> and <i>it</i>"
    assert "parse_mode" not in second and second["text"] == "**bold** and *it*"


def test_an_edit_that_changes_nothing_is_fine_and_other_edit_errors_are_not() -> None:
    api = ScriptedBotApi(
        refused(400, "Bad Request: message is not modified: specified new message content is the same"),
        refused(400, "Bad Request: message to edit not found"),
    )
    telegram = client(api, [])
    telegram.edit_message_text(42, 5, "same")
    with pytest.raises(TelegramError):
        telegram.edit_message_text(42, 5, "gone")


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("plain <tag> & text", "plain &lt;tag&gt; &amp; text"),
        (
            "**bold** __also__ *italic* _too_ ~~gone~~",
            "<b>bold</b> <b>also</b> <i>italic</i> <i>too</i> <s>gone</s>",
        ),
        ("use `a < b` here", "use <code>a &lt; b</code> here"),
        (
            "```python\nif a < b and c:\n    print('**x**')\n```",
            "<pre>if a &lt; b and c:\n    print('**x**')</pre>",
        ),
        ("[docs](https://example.com/a?b=1&c=2)", '<a href="https://example.com/a?b=1&amp;c=2">docs</a>'),
        ("## Heading\nbody", "<b>Heading</b>\nbody"),
        ("2 * 3 * 4 and snake_case_name", "2 * 3 * 4 and snake_case_name"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    ],
)
def test_markdown_becomes_the_html_telegram_accepts(markdown: str, expected: str) -> None:
    assert markdown_to_html(markdown) == expected


def test_long_replies_split_on_paragraphs_then_lines_in_order() -> None:
    paragraphs = [f"paragraph {i} " + "word " * 300 for i in range(6)]  # ~1,500 characters each
    text = "\n\n".join(paragraphs)
    pieces = split_message(text)
    assert all(len(p) <= MAX_MESSAGE_CHARS for p in pieces)
    assert len(pieces) == 3
    # Nothing lost, nothing reordered, and every cut is at a paragraph boundary
    assert " ".join(" ".join(pieces).split()) == " ".join(text.split())
    assert all(p.startswith("paragraph") for p in pieces)


def test_a_single_endless_line_is_cut_hard() -> None:
    text = "x" * (MAX_MESSAGE_CHARS * 2 + 10)
    pieces = split_message(text)
    assert [len(p) for p in pieces] == [MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS, 10]
    assert "".join(pieces) == text


def test_short_and_empty_texts() -> None:
    assert split_message("hello") == ["hello"]
    assert split_message("") == []
    with pytest.raises(ValueError):
        split_message("x", limit=0)


# ------------------------------------------------------------------------------------ over real HTTP


class _BotApiHandler(BaseHTTPRequestHandler):
    server: _BotApi

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.server.seen.append((self.path, body))
        if self.server.rate_limit_first and len(self.server.seen) == 1:
            status, answer = refused(429, "Too Many Requests: retry after 1", retry_after=1)
        else:
            status, answer = ok({"message_id": len(self.server.seen)})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


class _BotApi(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _BotApiHandler)
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.rate_limit_first = True


@pytest.fixture
def bot_api() -> Iterator[_BotApi]:
    server = _BotApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_real_transport_posts_json_to_the_configured_base_and_honours_429(bot_api: _BotApi) -> None:
    slept: list[float] = []
    telegram = TelegramClient(
        TOKEN, api_base=f"http://127.0.0.1:{bot_api.server_address[1]}", sleep=slept.append
    )
    assert telegram.send_message(42, "hi there") == 2
    assert slept == [1.0]
    assert [path for path, _ in bot_api.seen] == [f"/bot{TOKEN}/sendMessage"] * 2
    assert bot_api.seen[-1][1] == {
        "chat_id": 42,
        "text": "hi there",
        "link_preview_options": {"is_disabled": True},
    }


def test_an_unreachable_bot_api_is_reported_after_retries() -> None:
    slept: list[float] = []
    telegram = TelegramClient(TOKEN, api_base="http://127.0.0.1:9", timeout=1, attempts=2, sleep=slept.append)
    with pytest.raises(TelegramError) as failed:
        telegram.send_chat_action(42)
    assert failed.value.status == 0 and "network error" in failed.value.description
    assert slept == [0.5]


def test_a_client_allowed_no_attempt_refuses_to_call_instead_of_failing_obscurely() -> None:
    # Given a client configured with zero attempts, and a transport that records any call
    calls: list[str] = []

    def transport(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        calls.append(url)
        return 200, b'{"ok": true, "result": true}'

    telegram = TelegramClient(TOKEN, attempts=0, transport=transport)

    # When it is asked to call, Then it says why it cannot, and nothing was sent
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        telegram.send_chat_action(42)
    assert calls == []


def test_the_notifier_edits_waiting_notes_sends_the_rest_and_survives_failures(aws: dict[str, str]) -> None:
    from local.telegram import TelegramSimulator
    from serverless_openclaw.aws.clients import client as aws_client
    from serverless_openclaw.config import TelegramConfig
    from serverless_openclaw.control_plane import TelegramOnDemand
    from tests.local.servers import serve

    token = "7000000001:notifier-test-token"
    sim = TelegramSimulator(token=token)
    with serve(sim.app) as server:
        config = TelegramConfig.from_env({**os.environ, "TELEGRAM_API_BASE": server.url})
        # Without a token in SSM nobody can be told (and nothing fails)
        assert TelegramOnDemand(config).notify([(42, None)], "hello") == 0

        aws_client("ssm").put_parameter(
            Name="/test/secrets/telegram-bot-token", Value=token, Type="SecureString"
        )
        note = TelegramClient(token, api_base=server.url).send_message(42, "⏳ waking up")
        told = TelegramOnDemand(config).notify([(42, note), (43, None), (44, 99_999)], "⚠️ gave up")

    # The note became the notice, the chat without one got a message, the vanished note was skipped
    assert told == 2
    assert sim.chat(42) == ["⚠️ gave up"] and sim.chat(43) == ["⚠️ gave up"] and sim.chat(44) == []
