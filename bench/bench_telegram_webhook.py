"""Warm `telegram_webhook` updates against in-process moto: handler time, AWS calls and Bot API calls.

Four cases, each over BENCH_MESSAGES updates with fresh update_ids, after the cold start's reads (the
webhook secret and the bot token from SSM) are cached:
1. a text message from an allowlisted Telegram user whose agent is Running with an agent connection
   (the common warm path: intake, nudge, typing action);
2. the same updates redelivered by Telegram (duplicates);
3. a forged secret header (403);
4. a stranger's messages after their first refusal (the throttled refusal).
The time spent inside moto's emulation is measured apart and subtracted, as in bench_ws_message: what
remains is our code plus botocore's request building, the part that runs in Lambda. The Bot API is a
recording fake that takes no time: the real round trip to api.telegram.org is not measured here.
Baseline measured in the same run: one moto GetItem round trip. Prints figures; never fails on time.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared")]

from tests.conftest import TEST_ENV, load_event  # noqa: E402

os.environ.update(TEST_ENV)

from moto import mock_aws  # noqa: E402

from bench.moto_probe import calls, counting, in_moto, percentile  # noqa: E402
from local.template import create_tables, load_template  # noqa: E402
from serverless_openclaw import routing  # noqa: E402
from serverless_openclaw.aws import clients  # noqa: E402
from serverless_openclaw.lifecycle import Status  # noqa: E402
from serverless_openclaw.telegram_bot import TelegramBot  # noqa: E402
from tests.fakes import FakeLambdaContext, FakeLauncher  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "300"))
SECRET = "webhook-secret_0123456789-abcdefghij"
TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"
ALLOWED = 555
STRANGER = 777
USER = f"telegram:{ALLOWED}"
AGENT = "agent-conn"


class FakeBotApi:
    """The part of TelegramClient the webhook uses; records each call and takes no time."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1000)

    def send_message(self, chat_id: int, text: str, *, html_text: bool = False) -> int:
        self.calls["sendMessage"] += 1
        return next(self._ids)

    def edit_message_text(self, chat_id: int, message_id: int, text: str, *, html_text: bool = False) -> None:
        self.calls["editMessageText"] += 1

    def send_chat_action(self, chat_id: int, action: str = "typing") -> None:
        self.calls["sendChatAction"] += 1


class Case:
    """One measured case: handler times (with and without moto), AWS calls and Bot API calls."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.samples: list[float] = []
        self.own: list[float] = []
        self.aws: Counter[str] = Counter()
        self.bot_api: Counter[str] = Counter()


def ok(reply: tuple[int, Any]) -> bool:
    return reply == (200, {"ok": True})


def forbidden(reply: tuple[int, Any]) -> bool:
    return reply == (403, {"error": "forbidden"})


def main() -> None:
    update_ids = itertools.count(900_000)
    message_ids = itertools.count(1)

    def update(user: int, text: str) -> str:
        return json.dumps(
            {
                "update_id": next(update_ids),
                "message": {
                    "message_id": next(message_ids),
                    "from": {"id": user, "is_bot": False, "first_name": "Ada", "username": "ada_l"},
                    "chat": {"id": user, "type": "private"},
                    "date": 1_800_000_000,
                    "text": text,
                },
            }
        )

    with mock_aws():
        clients.reset()
        create_tables(clients.client("dynamodb"), load_template(), "test")
        ssm = clients.client("ssm")
        ssm.put_parameter(Name="/test/secrets/telegram-webhook-secret", Value=SECRET, Type="SecureString")
        ssm.put_parameter(Name="/test/secrets/telegram-bot-token", Value=TOKEN, Type="SecureString")
        app: Any = importlib.import_module("functions.telegram_webhook.app")
        plane = app.plane
        plane.launcher = FakeLauncher()  # ECS is not in the warm path; a running agent is
        allowlisted = replace(plane.cfg.telegram, allowed_user_ids=frozenset({ALLOWED}))
        plane.cfg = replace(plane.cfg, telegram=allowlisted)
        bot = TelegramBot.from_plane(plane)
        fake = FakeBotApi()
        bot.bot.make = lambda token, base: fake  # type: ignore[assignment,return-value]
        app.bot = bot
        # The allowlisted user's agent is running, with a live agent connection.
        started = routing.request_start(plane, USER)
        assert started.task_arn
        state = plane.task_state.get(USER)
        plane.task_state.transition(state, Status.RUNNING, time.time())
        plane.task_state.attach_agent(USER, started.task_arn, AGENT, time.time())
        clients.client("apigatewaymanagementapi", plane.pusher.endpoint)

        event: dict[str, Any] = load_event("telegram_webhook_message.json")

        def post(body: str, secret: str) -> tuple[int, Any]:
            event["headers"]["x-telegram-bot-api-secret-token"] = secret
            event["body"] = body
            with contextlib.redirect_stdout(io.StringIO()):
                result: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
            return result["statusCode"], json.loads(result["body"])

        def measure(
            title: str, bodies: list[str], secret: str, check: Callable[[tuple[int, Any]], bool]
        ) -> Case:
            case = Case(title)
            before = Counter(fake.calls)
            with counting():
                for body in bodies:
                    in_moto[0] = 0.0
                    t = time.perf_counter()
                    reply = post(body, secret)
                    elapsed = time.perf_counter() - t
                    case.samples.append(elapsed * 1000)
                    case.own.append((elapsed - in_moto[0]) * 1000)
                    assert check(reply), (title, reply)
            case.aws = Counter(calls)
            case.bot_api = Counter(fake.calls)
            case.bot_api.subtract(before)
            return case

        for n in range(20):  # warm-up: the cold start's SSM reads, the conversation row, botocore's caches
            assert ok(post(update(ALLOWED, f"warm-up {n}"), SECRET))

        delivered = [update(ALLOWED, f"message {n}") for n in range(MESSAGES)]
        cases = [measure("1. text message, agent running (intake + nudge)", delivered, SECRET, ok)]
        assert plane.task_state.get(USER).agent_connection_id == AGENT, "a nudge missed the agent"
        cases.append(measure("2. redelivered update (duplicate)", delivered, SECRET, ok))

        assert forbidden(post(update(ALLOWED, "forged"), "forged-secret"))  # the one SSM re-read per 30 s
        forged = [update(ALLOWED, f"forged {n}") for n in range(MESSAGES)]
        cases.append(measure("3. forged secret (403)", forged, "forged-secret", forbidden))

        first_refusals = fake.calls["sendMessage"]
        assert ok(post(update(STRANGER, "hello?"), SECRET))  # the first refusal, told once per quiet period
        assert fake.calls["sendMessage"] == first_refusals + 1
        stranger = [update(STRANGER, f"anyone there? {n}") for n in range(MESSAGES)]
        cases.append(measure("4. stranger after the first refusal (throttled)", stranger, SECRET, ok))

        ddb = clients.client("dynamodb")
        key = {"PK": {"S": f"USER#{USER}"}}
        base = []
        for _ in range(MESSAGES):
            t = time.perf_counter()
            ddb.get_item(TableName=TEST_ENV["TASK_STATE_TABLE"], Key=key)
            base.append((time.perf_counter() - t) * 1000)

    base_median = statistics.median(base)
    print(f"warm telegram_webhook, {MESSAGES} updates per case, in-process moto")
    print(f"  baseline       one moto GetItem {base_median:.2f} ms")
    print("  Bot API        a recording fake counted as 0 ms: the real sendChatAction/sendMessage round trip")
    print("                 to api.telegram.org is not measurable here (add one per Bot API call below)")
    for case in cases:
        median, p95 = statistics.median(case.samples), percentile(case.samples, 0.95)
        own_median, own_p95 = statistics.median(case.own), percentile(case.own, 0.95)
        print(case.title)
        print(f"  handler time   median {median:6.2f} ms   p95 {p95:6.2f} ms   (including moto's emulation)")
        print(f"  without moto   median {own_median:6.2f} ms   p95 {own_p95:6.2f} ms")
        ratio, own_ratio = median / base_median, own_median / base_median
        print(f"  vs baseline    handler = {ratio:.1f}×, without moto = {own_ratio:.1f}×")
        print(f"  AWS calls      {sum(case.aws.values()) / MESSAGES:.2f} per update:")
        for name, n in sorted(case.aws.items()):
            print(f"                 {name:<45} {n / MESSAGES:.2f}")
        print(f"  Bot API calls  {sum(case.bot_api.values()) / MESSAGES:.2f} per update:")
        for name, n in sorted(case.bot_api.items()):
            if n:
                print(f"                 {name:<45} {n / MESSAGES:.2f}")


if __name__ == "__main__":
    main()
