"""The Telegram webhook (`POST /telegram`) through its Lambda handler, on moto, with a recording Bot API.

What it must show (issue 5): a forged or missing secret gets 403 and writes nothing; a redelivered
update gets one answer; a stranger gets one refusal and starts nothing; link codes are single use,
expire, and guessing them is rate-limited; a linked user's messages reach the web user's agent and history.
"""

from __future__ import annotations

import copy
import importlib
import itertools
import json
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw import protocol
from serverless_openclaw.aws.clients import client
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.store import codec
from serverless_openclaw.store.telegram_links import TelegramLinkStore
from serverless_openclaw.telegram import CachedParameter
from serverless_openclaw.telegram_bot import TelegramBot, parse_command
from serverless_openclaw.telegram_links import (
    CODE_TTL_SECONDS,
    LINK_FAILURE_WINDOW_SECONDS,
    MAX_LINK_FAILURES,
    REFUSAL_QUIET_SECONDS,
)
from tests.conftest import load_event
from tests.fakes import Clock, FakeLauncher, RecordingPusher
from tests.unit.test_http_api import ALICE, BOB, Api

SECRET = "webhook-secret_0123456789-abcdefghij"
TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"
STRANGER = 777
ADA = 424242  # the sender in events/telegram_webhook_message.json
ALLOWED = 555


class RecordingBot:
    """The part of TelegramClient the webhook uses, recording what each chat would show."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str]] = []
        self.edits: list[tuple[int, int, str]] = []
        self.actions: list[tuple[int, str]] = []
        self._ids = itertools.count(1000)

    def send_message(self, chat_id: int, text: str, *, html_text: bool = False) -> int:
        self.sent.append((chat_id, text))
        return next(self._ids)

    def edit_message_text(self, chat_id: int, message_id: int, text: str, *, html_text: bool = False) -> None:
        self.edits.append((chat_id, message_id, text))

    def send_chat_action(self, chat_id: int, action: str = "typing") -> None:
        self.actions.append((chat_id, action))

    def chat(self, chat_id: int) -> list[str]:
        return [text for chat, text in self.sent if chat == chat_id]


@pytest.fixture
def secrets_in_ssm(aws: dict[str, str]) -> None:
    ssm = client("ssm")
    ssm.put_parameter(Name="/test/secrets/telegram-webhook-secret", Value=SECRET, Type="SecureString")
    ssm.put_parameter(Name="/test/secrets/telegram-bot-token", Value=TOKEN, Type="SecureString")


@pytest.fixture
def telegram() -> RecordingBot:
    return RecordingBot()


@pytest.fixture
def app(
    cp: ControlPlane, secrets_in_ssm: None, telegram: RecordingBot, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    module = importlib.import_module("functions.telegram_webhook.app")
    cp.cfg = replace(cp.cfg, telegram=replace(cp.cfg.telegram, allowed_user_ids=frozenset({ALLOWED})))
    bot = TelegramBot.from_plane(cp)
    bot.clock = cp.clock
    bot.bot.make = lambda token, base: telegram  # type: ignore[assignment,return-value]
    monkeypatch.setattr(module, "bot", bot)
    return module


class Telegram:
    """Posts updates to the handler as Telegram does (payload 2.0 with the secret header)."""

    def __init__(self, app: ModuleType, lambda_context: Any) -> None:
        self.app = app
        self.lambda_context = lambda_context
        self.update_ids = itertools.count(900_000)
        self.message_ids = itertools.count(1)

    def update(self, user: int, text: str, **message: Any) -> dict[str, Any]:
        return {
            "update_id": next(self.update_ids),
            "message": {
                "message_id": next(self.message_ids),
                "from": {"id": user, "is_bot": False, "first_name": "Ada", "username": "ada_l"},
                "chat": {"id": user, "type": "private"},
                "date": 1_800_000_000,
                "text": text,
                **message,
            },
        }

    def post(self, update: Any, *, secret: str | None = SECRET, raw: str | None = None) -> tuple[int, Any]:
        event = load_event("telegram_webhook_message.json")
        event["headers"] = {k: v for k, v in event["headers"].items() if "secret" not in k}  # type: ignore[union-attr]
        if secret is not None:
            event["headers"]["x-telegram-bot-api-secret-token"] = secret  # type: ignore[index]
        event["body"] = raw if raw is not None else json.dumps(update)
        response = self.app.lambda_handler(event, self.lambda_context)
        return response["statusCode"], json.loads(response["body"])

    def say(self, user: int, text: str) -> tuple[int, Any]:
        return self.post(self.update(user, text))


@pytest.fixture
def tg(app: ModuleType, lambda_context: Any) -> Telegram:
    return Telegram(app, lambda_context)


@pytest.fixture
def web(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> Api:
    module = importlib.import_module("functions.http_api.app")
    monkeypatch.setattr(module, "plane", cp)
    return Api(module, lambda_context)


def table_items(name: str) -> list[dict[str, Any]]:
    return [codec.load(raw) or {} for raw in client("dynamodb").scan(TableName=name)["Items"]]


def nothing_written(aws: dict[str, str]) -> bool:
    return all(not table_items(table) for table in aws.values())


def link(web: Api, tg: Telegram, user: str, telegram_user: int) -> None:
    status, body = web.call("POST", "/api/telegram/link-code", user=user)
    assert status == 201
    tg.say(telegram_user, f"/link {body['code']}")


# ---------------------------------------------------------------------------------------- the edge


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.upper(), " " + SECRET, "é" + SECRET[1:]],
)
def test_forged_or_missing_secret_is_403_and_writes_nothing(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot, launcher: FakeLauncher, secret: str | None
) -> None:
    status, body = tg.post(tg.update(ALLOWED, "start my agent"), secret=secret)
    assert (status, body) == (403, {"error": "forbidden"})
    assert nothing_written(aws)
    assert telegram.sent == [] and telegram.actions == [] and launcher.launched == []


def test_without_a_configured_secret_every_update_is_refused(
    tg: Telegram, aws: dict[str, str], app: ModuleType
) -> None:
    client("ssm").delete_parameter(Name="/test/secrets/telegram-webhook-secret")
    app.bot.secret = CachedParameter("/test/secrets/telegram-webhook-secret")
    assert tg.post(tg.update(ALLOWED, "hi"), secret="")[0] == 403
    assert tg.post(tg.update(ALLOWED, "hi"), secret="anything")[0] == 403
    assert nothing_written(aws)


def _message(message_id: Any = 1, sender: Any = None, chat: Any = None, **fields: Any) -> str:
    """A raw update carrying one message; each part can be replaced by something malformed."""
    sender = {"id": ALLOWED} if sender is None else sender
    chat = {"id": ALLOWED, "type": "private"} if chat is None else chat
    message = {"message_id": message_id, "from": sender, "chat": chat, "text": "x", **fields}
    return json.dumps({"update_id": 1, "message": message})


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        ("not json", 400, "invalid json"),
        ("", 400, "not an update"),
        ("[]", 400, "not an update"),
        ('{"message": {}}', 400, "not an update"),
        ('{"update_id": "12"}', 400, "not an update"),
        ('{"update_id": true}', 400, "not an update"),
        ('{"update_id": -1}', 400, "not an update"),
        (
            '{"update_id": 1, "message": {"message_id": 1, "text": "x", '
            '"chat": {"id": "1", "type": "private"}, "from": {"id": 1}}}',
            400,
            "not an update",
        ),
        (_message(sender={"id": "1"}), 400, "not an update"),
        (_message(message_id=None), 400, "not an update"),
        (_message(message_id=True, text="   "), 400, "not an update"),
        ("x" * (256 * 1024 + 1), 413, "too large"),
    ],
)
def test_garbage_with_the_right_secret_is_refused_and_writes_nothing(
    tg: Telegram, aws: dict[str, str], raw: str, status: int, reason: str
) -> None:
    assert tg.post(None, raw=raw) == (status, {"error": reason})
    assert nothing_written(aws)


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 5, "edited_message": {"message_id": 1, "text": "edited"}},
        {"update_id": 6, "callback_query": {"id": "1"}},
        {
            "update_id": 7,
            "message": {
                "message_id": 1,
                "from": {"id": ALLOWED},
                "chat": {"id": ALLOWED, "type": "private"},
                "photo": [{"file_id": "x"}],
            },
        },
        {
            "update_id": 8,
            "message": {
                "message_id": 1,
                "from": {"id": ALLOWED},
                "chat": {"id": -100, "type": "group"},
                "text": "in a group",
            },
        },
        {
            "update_id": 9,
            "message": {
                "message_id": 1,
                "from": {"id": 9, "is_bot": True},
                "chat": {"id": 9, "type": "private"},
                "text": "a bot",
            },
        },
        {
            "update_id": 10,
            "message": {
                "message_id": 1,
                "from": {"id": ALLOWED},
                "chat": {"id": ALLOWED, "type": "private"},
                "text": "   ",
            },
        },
        json.loads(_message(text=5)),
        json.loads(_message(chat="private")),
        json.loads(_message(sender=[ALLOWED])),
        json.loads(_message(text="x" * (protocol.MAX_MESSAGE_BYTES + 1))),
    ],
)
def test_other_updates_are_acknowledged_and_ignored(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot, update: dict[str, Any]
) -> None:
    assert tg.post(update) == (200, {"ok": True, "ignored": True})
    assert nothing_written(aws) and telegram.sent == []


def test_a_rotated_secret_is_picked_up(tg: Telegram, app: ModuleType) -> None:
    assert tg.say(ALLOWED, "/help")[0] == 200
    client("ssm").put_parameter(
        Name="/test/secrets/telegram-webhook-secret",
        Value="rotated-secret",
        Type="SecureString",
        Overwrite=True,
    )
    app.bot._secret_refreshed_at = -1e18  # the last refresh was long ago
    assert tg.post(tg.update(ALLOWED, "/help"), secret="rotated-secret")[0] == 200
    assert tg.post(tg.update(ALLOWED, "/help"), secret=SECRET)[0] == 403


# ---------------------------------------------------------------------------------------- strangers


def test_a_stranger_gets_one_polite_refusal_and_nothing_starts(
    tg: Telegram, aws: dict[str, str], telegram: RecordingBot, launcher: FakeLauncher, cp: ControlPlane
) -> None:
    for text in ("hello?", "anyone there?", "please start"):
        assert tg.say(STRANGER, text)[0] == 200
    refusals = telegram.chat(STRANGER)
    assert len(refusals) == 1 and "/link" in refusals[0] and "Settings" in refusals[0]
    assert launcher.launched == []
    # Only the bot's own memory of the refusal is written: no message, no conversation, no agent state.
    for table in ("INBOX_TABLE", "CONVERSATIONS_TABLE", "TASK_STATE_TABLE"):
        assert table_items(aws[table]) == []
    # After the quiet period the stranger is told once more.
    cp.clock.advance(REFUSAL_QUIET_SECONDS + 1)  # type: ignore[attr-defined]
    tg.say(STRANGER, "hello again")
    assert len(telegram.chat(STRANGER)) == 2


def test_a_stranger_asking_for_help_is_told_how_to_link(tg: Telegram, telegram: RecordingBot) -> None:
    tg.say(STRANGER, "/start")
    tg.say(STRANGER, "/status")  # not theirs to ask: the refusal is not repeated within the hour
    assert len(telegram.chat(STRANGER)) == 1 and "/link CODE" in telegram.chat(STRANGER)[0]


# ---------------------------------------------------------------------------------------- messages


def test_allowlisted_user_message_is_queued_and_starts_their_own_agent(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    status, body = tg.say(ALLOWED, "What is on my list today?")
    assert (status, body) == (200, {"ok": True})
    user = f"telegram:{ALLOWED}"
    assert launcher.launched and launcher.launched[0][0] == user
    (item,) = cp.inbox.items(user)
    assert item.channel == "telegram" and item.text == "What is on my list today?"
    # One "waking up" message, whose id the bridge will edit into the answer.
    (waking,) = telegram.chat(ALLOWED)
    assert "Waking up" in waking
    assert item.reply_to == {"chatId": ALLOWED, "messageId": 1, "placeholderId": 1000}
    stored = cp.conversations.messages(user, item.conversation_id, 10, None).items
    assert [m["content"] for m in stored] == ["What is on my list today?"]
    assert stored[0]["channel"] == "telegram"


def test_the_same_update_delivered_twice_is_answered_once(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    update = tg.update(ALLOWED, "only once please")
    assert tg.post(update)[0] == 200
    assert tg.post(copy.deepcopy(update))[0] == 200
    assert tg.post(copy.deepcopy(update))[0] == 200
    assert len(cp.inbox.items(f"telegram:{ALLOWED}")) == 1
    assert len(launcher.launched) == 1
    assert len(telegram.chat(ALLOWED)) == 1


def test_a_redelivered_command_is_answered_once(tg: Telegram, telegram: RecordingBot) -> None:
    update = tg.update(ALLOWED, "/help")
    tg.post(update)
    tg.post(update)
    assert len(telegram.chat(ALLOWED)) == 1


def test_messages_share_one_conversation_until_new(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot
) -> None:
    user = f"telegram:{ALLOWED}"
    tg.say(ALLOWED, "first")
    tg.say(ALLOWED, "second")
    first, second = cp.inbox.items(user)
    assert first.conversation_id == second.conversation_id
    tg.say(ALLOWED, "/new")
    assert "New conversation" in telegram.chat(ALLOWED)[-1]
    tg.say(ALLOWED, "third")
    third = cp.inbox.items(user)[-1]
    assert third.text == "third" and third.conversation_id != first.conversation_id


def _woken(tg: Telegram, cp: ControlPlane) -> str:
    """The allowlisted user's first message woke their agent, which now runs; its task ARN."""
    user = f"telegram:{ALLOWED}"
    tg.say(ALLOWED, "wake up")
    state = cp.task_state.get(user)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock()) is not None
    assert cp.task_state.attach_agent(user, state.task_arn or "", "agent-conn", cp.clock())
    return state.task_arn or ""


def test_a_running_agent_is_nudged_and_no_note_is_sent(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, pusher: RecordingPusher
) -> None:
    user = f"telegram:{ALLOWED}"
    _woken(tg, cp)
    telegram.sent.clear()
    tg.say(ALLOWED, "are you there?")
    assert telegram.sent == [] and telegram.actions == []  # the bridge shows typing when the run starts
    assert pusher.frames("agent-conn", "nudge")
    item = cp.inbox.items(user)[-1]
    assert "placeholderId" not in item.reply_to


def test_while_openclaw_restarts_a_message_gets_a_note_saying_so_and_status_says_so_too(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, pusher: RecordingPusher
) -> None:
    # Given a running agent whose OpenClaw is restarting, back in about 40 s
    user = f"telegram:{ALLOWED}"
    task_arn = _woken(tg, cp)
    assert cp.task_state.mark_restarting(user, task_arn, cp.clock() + 40)
    telegram.sent.clear()

    # When a message arrives meanwhile
    tg.say(ALLOWED, "are you there?")

    # Then the agent is nudged (it answers once OpenClaw is back) and the user gets one note to be edited
    assert pusher.frames("agent-conn", "nudge")
    assert telegram.chat(ALLOWED) == [
        "⏳ Your agent is restarting (about 40 s)… I will replace this message with the answer."
    ]
    assert "placeholderId" in cp.inbox.items(user)[-1].reply_to
    # And /status says it restarts
    tg.say(ALLOWED, "/status")
    assert telegram.chat(ALLOWED)[-1].startswith("⏳ Your agent is restarting, about 40 s to go.")


def test_stop_aborts_the_running_reply(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, pusher: RecordingPusher
) -> None:
    tg.say(ALLOWED, "/stop")
    assert "Nothing is being written" in telegram.chat(ALLOWED)[-1]
    user = f"telegram:{ALLOWED}"
    tg.say(ALLOWED, "a long answer please")
    state = cp.task_state.get(user)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock()) is not None
    assert cp.task_state.attach_agent(user, state.task_arn or "", "agent-conn", cp.clock())
    tg.say(ALLOWED, "/stop")
    assert telegram.chat(ALLOWED)[-1] == "Stopping the reply."
    assert pusher.frames("agent-conn", "abort") == [protocol.abort(None)]


def test_status_reports_the_agent(tg: Telegram, telegram: RecordingBot) -> None:
    tg.say(ALLOWED, "/status")
    assert "asleep" in telegram.chat(ALLOWED)[-1] and "allowlist" in telegram.chat(ALLOWED)[-1]
    tg.say(ALLOWED, "start please")
    tg.say(ALLOWED, "/status@openclaw_local_bot")
    assert "starting" in telegram.chat(ALLOWED)[-1]


def test_unknown_slash_commands_go_to_the_agent(tg: Telegram, cp: ControlPlane) -> None:
    tg.say(ALLOWED, "/think harder")
    (item,) = cp.inbox.items(f"telegram:{ALLOWED}")
    assert item.text == "/think harder"


def test_a_message_that_cannot_be_stored_is_a_500_for_telegram_to_redeliver(
    tg: Telegram, cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*_: object, **__: object) -> None:
        raise RuntimeError("DynamoDB is down")

    update = tg.update(ALLOWED, "keep me")
    with monkeypatch.context() as patch:
        patch.setattr(cp.intake, "accept", fail)
        with pytest.raises(RuntimeError):
            tg.post(update)
    assert tg.post(update)[0] == 200  # the redelivery is not mistaken for a duplicate
    assert len(cp.inbox.items(f"telegram:{ALLOWED}")) == 1


# ---------------------------------------------------------------------------------------- linking


def test_linking_routes_telegram_to_the_web_users_agent_and_history(
    tg: Telegram, web: Api, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    assert web.call("GET", "/api/telegram/link")[1] == {"linked": False, "pendingCode": None}
    status, code = web.call("POST", "/api/telegram/link-code")
    assert status == 201 and len(code["code"]) == 8 and code["expiresInSeconds"] == CODE_TTL_SECONDS
    assert web.call("GET", "/api/telegram/link")[1]["pendingCode"]["code"] == code["code"]
    tg.say(ADA, f"/link {code['code'].lower()[:4]}-{code['code'][4:]}")  # forgiving about case and dashes
    assert "Linked" in telegram.chat(ADA)[-1]
    status, body = web.call("GET", "/api/telegram/link")
    assert body["linked"] is True and body["telegramUserId"] == ADA and body["username"] == "ada_l"
    assert body["pendingCode"] is None
    tg.say(ADA, "Telegram, meet my web agent")
    (item,) = cp.inbox.items(ALICE)
    assert item.channel == "telegram" and launcher.launched[0][0] == ALICE
    status, listing = web.call("GET", "/api/conversations")
    assert [c["conversationId"] for c in listing["items"]] == [item.conversation_id]
    status, history = web.call("GET", f"/api/conversations/{item.conversation_id}/messages")
    assert [m["content"] for m in history["items"]] == ["Telegram, meet my web agent"]
    # The settings listing does not show the link's internal rows.
    assert set(web.call("GET", "/api/settings")[1]) == {
        "model",
        "idleTimeoutMinutes",
        "timezone",
        "wakeOnIntent",
        "supportedProviders",
        "wakeOnIntentCost",
    }


def test_unlinking_from_the_web_makes_the_telegram_user_a_stranger(
    tg: Telegram, web: Api, telegram: RecordingBot, cp: ControlPlane
) -> None:
    link(web, tg, ALICE, ADA)
    status, _ = web.call("DELETE", "/api/telegram/link")
    assert status == 204
    assert web.call("DELETE", "/api/telegram/link")[0] == 404
    assert web.call("GET", "/api/telegram/link")[1]["linked"] is False
    tg.say(ADA, "still there?")
    assert "not linked" in telegram.chat(ADA)[-1]
    assert cp.inbox.items(ALICE) == []


def test_unlink_from_telegram(tg: Telegram, web: Api, telegram: RecordingBot) -> None:
    link(web, tg, ALICE, ADA)
    tg.say(ADA, "/unlink")
    assert telegram.chat(ADA)[-1].startswith("Unlinked")
    assert web.call("GET", "/api/telegram/link")[1]["linked"] is False
    tg.say(ALLOWED, "/unlink")
    assert "not linked" in telegram.chat(ALLOWED)[-1]


def test_a_used_code_is_refused(tg: Telegram, web: Api, telegram: RecordingBot) -> None:
    status, code = web.call("POST", "/api/telegram/link-code")
    tg.say(ADA, f"/link {code['code']}")
    tg.say(STRANGER, f"/link {code['code']}")
    assert "not valid" in telegram.chat(STRANGER)[-1]
    assert TelegramLinkStore("test-Settings").linked_user(STRANGER) is None


def test_an_expired_code_is_refused(tg: Telegram, web: Api, telegram: RecordingBot, clock: Clock) -> None:
    status, code = web.call("POST", "/api/telegram/link-code")
    clock.advance(CODE_TTL_SECONDS)
    tg.say(ADA, f"/link {code['code']}")
    assert "not valid" in telegram.chat(ADA)[-1]
    assert web.call("GET", "/api/telegram/link")[1] == {"linked": False, "pendingCode": None}


def test_a_new_code_retires_the_previous_one(tg: Telegram, web: Api, telegram: RecordingBot) -> None:
    first = web.call("POST", "/api/telegram/link-code")[1]["code"]
    second = web.call("POST", "/api/telegram/link-code")[1]["code"]
    tg.say(ADA, f"/link {first}")
    assert "not valid" in telegram.chat(ADA)[-1]
    tg.say(ADA, f"/link {second}")
    assert "Linked" in telegram.chat(ADA)[-1]


def test_guessing_codes_is_rate_limited_even_for_a_right_guess(
    tg: Telegram, web: Api, telegram: RecordingBot, clock: Clock
) -> None:
    for guess in ["AAAAAAAA", "BBBB2222", "short", "0OIL1U00", "ZZZZZZZZ"][:MAX_LINK_FAILURES]:
        tg.say(STRANGER, f"/link {guess}")
    assert "Too many wrong codes" in telegram.chat(STRANGER)[-1]
    code = web.call("POST", "/api/telegram/link-code")[1]["code"]
    tg.say(STRANGER, f"/link {code}")
    assert "Too many wrong codes" in telegram.chat(STRANGER)[-1]
    assert web.call("GET", "/api/telegram/link")[1]["linked"] is False
    # The window passes: the code (still valid) works, and the counter starts again.
    clock.advance(LINK_FAILURE_WINDOW_SECONDS - 300)
    tg.say(STRANGER, f"/link {code}")
    assert "Too many" in telegram.chat(STRANGER)[-1]
    clock.advance(301)
    code = web.call("POST", "/api/telegram/link-code")[1]["code"]
    tg.say(STRANGER, f"/link {code}")
    assert "Linked" in telegram.chat(STRANGER)[-1]


def test_link_without_a_code_explains_itself(tg: Telegram, telegram: RecordingBot) -> None:
    tg.say(STRANGER, "/link")
    assert "/link ABCD2345" in telegram.chat(STRANGER)[-1]


def test_relinking_moves_the_telegram_account_and_replaces_the_old_link(
    tg: Telegram, web: Api, telegram: RecordingBot
) -> None:
    link(web, tg, ALICE, ADA)
    link(web, tg, BOB, ADA)  # the same Telegram account now belongs with Bob's web account
    assert web.call("GET", "/api/telegram/link", user=ALICE)[1]["linked"] is False
    assert web.call("GET", "/api/telegram/link", user=BOB)[1]["telegramUserId"] == ADA
    link(web, tg, BOB, STRANGER)  # Bob links another Telegram account: Ada's no longer reaches him
    assert TelegramLinkStore("test-Settings").linked_user(ADA) is None
    assert TelegramLinkStore("test-Settings").linked_user(STRANGER) == BOB


def test_link_api_needs_a_signed_in_caller(web: Api) -> None:
    from tests.unit.test_http_api import NO_CALLER

    for method, path in [
        ("POST", "/api/telegram/link-code"),
        ("GET", "/api/telegram/link"),
        ("DELETE", "/api/telegram/link"),
    ]:
        assert web.call(method, path, user=NO_CALLER)[0] == 401


def test_parse_command() -> None:
    assert parse_command("/link@my_bot abc 123") == ("link", "abc 123")
    assert parse_command("/HELP") == ("help", "")
    assert parse_command("hello /help") == (None, "")
    assert parse_command("/unknown thing") == (None, "")


# ------------------------------------------------------------------------------------ wake on intent


def test_opening_the_chat_with_start_wakes_the_agent_once_and_says_so(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    # Given an allowlisted user whose agent is asleep
    user = f"telegram:{ALLOWED}"

    # When they open the chat (/start), and then ask for it again with /wake
    tg.say(ALLOWED, "/start")
    tg.say(ALLOWED, "/wake")

    # Then one task started, marked as woken without a message; /start also shows the help, and the
    # second command says the agent is already waking
    assert len(launcher.launched) == 1
    assert cp.task_state.get(user).warm_since is not None
    first, second = telegram.chat(ALLOWED)
    assert first.startswith("⏳ Waking up your agent") and "/wake - " in first and "/status" in first
    assert second == "⏳ Your agent is already waking up."
    assert cp.inbox.items(user) == []


def test_wake_on_a_running_agent_says_it_is_awake_and_changes_nothing(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    user = f"telegram:{ALLOWED}"
    _woken(tg, cp)
    before = cp.task_state.get(user)
    telegram.sent.clear()
    tg.say(ALLOWED, "/wake")
    assert telegram.chat(ALLOWED) == ["✅ Your agent is awake."]
    assert len(launcher.launched) == 1 and cp.task_state.get(user) == before


def test_wake_for_a_linked_user_who_turned_it_off_starts_nothing_and_says_why(
    tg: Telegram, web: Api, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    # Given a linked Telegram account whose web user turned wake on intent off
    link(web, tg, ALICE, ADA)
    assert web.call("PUT", "/api/settings", body={"wakeOnIntent": False}, user=ALICE)[0] == 200
    telegram.sent.clear()

    # When they send /wake
    tg.say(ADA, "/wake")

    # Then nothing starts, and they are told the agent wakes with their first message instead
    assert launcher.launched == []
    (reply,) = telegram.chat(ADA)
    assert "off in your settings" in reply and "first message" in reply


def test_a_stranger_cannot_wake_anything(
    tg: Telegram, cp: ControlPlane, telegram: RecordingBot, launcher: FakeLauncher
) -> None:
    tg.say(STRANGER, "/wake")
    tg.say(STRANGER, "/start")
    assert launcher.launched == []
    assert all("/link CODE" in text for text in telegram.chat(STRANGER)) and telegram.chat(STRANGER)
    assert cp.task_state.get(f"telegram:{STRANGER}").status is Status.IDLE
