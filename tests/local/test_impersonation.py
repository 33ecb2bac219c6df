"""`make invoke` with a sample event acts as the running stack's demo user, and says whom it acts as."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local.impersonation import ConnectionKind, DemoUser, TelegramChat, impersonate
from tests.conftest import load_event

EVENTS = sorted(path.name for path in (Path(__file__).resolve().parents[2] / "events").glob("*.json"))
DEMO = DemoUser(user_id="d3m0-0000-4000-8000-000000000001", username="demo@example.com")
CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/local-Cluster"


@dataclass
class Records:
    """What the running stack has recorded: connections per (user, kind), Telegram links, its secret."""

    connections: dict[tuple[str, ConnectionKind], str] = field(default_factory=dict)
    telegram: dict[str, TelegramChat] = field(default_factory=dict)
    secret: str | None = "the-stacks-webhook-secret"

    def open_connection(self, user_id: str, kind: ConnectionKind) -> str | None:
        return self.connections.get((user_id, kind))

    def linked_telegram(self, user_id: str) -> TelegramChat | None:
        return self.telegram.get(user_id)

    def webhook_secret(self) -> str | None:
        return self.secret

    def cluster_arn(self) -> str:
        return CLUSTER


def everything_recorded() -> Records:
    """A demo user with the web chat open, an agent connected and a linked Telegram account."""
    return Records(
        connections={(DEMO.user_id, "client"): "BrowserConn0A=", (DEMO.user_id, "agent"): "AgentConn00A="},
        telegram={DEMO.user_id: TelegramChat(user_id=777001, chat_id=777001)},
    )


def telegram_message(event: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(event["body"])["message"]
    return message


@pytest.mark.parametrize("name", EVENTS)
def test_every_sample_event_acts_as_the_demo_user_unless_its_kind_cannot(name: str) -> None:
    # Given a sample event, and a demo user with everything a sample could need recorded
    event = load_event(name)
    original = copy.deepcopy(event)

    # When invoke fills in the demo user
    acting = impersonate(event, DEMO, everything_recorded())

    # Then it acts as the demo user, except $connect (credentials are the event's), $disconnect (it would
    # cut a real browser off) and a schedule (no user); the line says which, and the file's event is intact
    if name.startswith(("ws_connect", "ws_disconnect")):
        assert acting.said.startswith(f"not acting as {DEMO}: ")
        assert acting.event == original
    elif name.startswith("watchdog"):
        assert acting.said == "acting as no one in particular: this event names no user"
        assert acting.event == original
    else:
        assert acting.said.startswith(f"acting as {DEMO}")
        assert acting.event != original
    assert event == original


def test_an_http_api_event_carries_the_demo_user_in_its_jwt_claims() -> None:
    # Given the status request of a made-up user
    event = load_event("http_api_get_status.json")

    # When it acts as the demo user
    acting = impersonate(event, DEMO, Records())

    # Then the authorizer's claims name the demo user (what the function reads), the rest is the sample's
    claims = acting.event["requestContext"]["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == DEMO.user_id
    assert acting.event["rawPath"] == "/api/status"
    assert acting.said == f"acting as {DEMO}: the JWT claims' sub"


@pytest.mark.parametrize(
    ("name", "kind", "connection"),
    [
        ("ws_message_get_status.json", "client", "BrowserConn0A="),
        ("ws_message_heartbeat.json", "agent", "AgentConn00A="),
    ],
)
def test_a_websocket_frame_comes_from_the_demo_users_connection_of_the_kind_that_sends_it(
    name: str, kind: str, connection: str
) -> None:
    # Given a frame a browser sends, or a heartbeat a bridge sends, and both kinds of connection open
    event = load_event(name)

    # When it acts as the demo user
    acting = impersonate(event, DEMO, everything_recorded())

    # Then it arrives on the demo user's connection of that kind, and the line names it
    assert acting.event["requestContext"]["connectionId"] == connection
    assert acting.event["body"] == event["body"]
    assert connection in acting.said


def test_a_websocket_frame_without_an_open_web_chat_says_whom_it_acts_as_instead() -> None:
    # Given a browser's frame, and a demo user who has not opened the web chat
    event = load_event("ws_message_send_message.json")

    # When it acts as the demo user
    acting = impersonate(event, DEMO, Records())

    # Then it goes on the event's own connection, and the line says why and how to get a real one
    assert acting.event == event
    assert acting.said.startswith(f"not acting as {DEMO}: they have no open web chat (sign in to it)")
    assert "Aa1bCdEfIAMCJ3Q=" in acting.said


def test_a_telegram_update_comes_from_the_demo_users_linked_account_with_the_stacks_secret() -> None:
    # Given a Telegram update from a made-up account, and a demo user who linked theirs
    event = load_event("telegram_webhook_message.json")
    records = Records(telegram={DEMO.user_id: TelegramChat(user_id=777001, chat_id=777002)})

    # When it acts as the demo user
    acting = impersonate(event, DEMO, records)

    # Then the sender and the private chat are the linked account, the secret is the stack's, the text stays
    message = telegram_message(acting.event)
    assert (message["from"]["id"], message["chat"]["id"]) == (777001, 777002)
    assert message["text"] == telegram_message(event)["text"]
    assert acting.event["headers"]["x-telegram-bot-api-secret-token"] == "the-stacks-webhook-secret"
    assert acting.said == f"acting as {DEMO} through their linked Telegram account 777001"


def test_a_telegram_update_without_a_linked_account_says_which_telegram_user_it_comes_from() -> None:
    # Given a Telegram update, and a demo user who linked no Telegram account
    event = load_event("telegram_webhook_message.json")

    # When it acts as the demo user
    acting = impersonate(event, DEMO, Records())

    # Then the sender stays the event's (the bot will explain linking to them), with the stack's secret
    assert telegram_message(acting.event)["from"]["id"] == 424242
    assert acting.event["headers"]["x-telegram-bot-api-secret-token"] == "the-stacks-webhook-secret"
    assert acting.said.startswith(f"not acting as {DEMO}: they have linked no Telegram account")
    assert acting.said.endswith("the event's Telegram user 424242")


def test_a_task_event_names_the_demo_user_on_the_stacks_cluster_and_keeps_its_own_task() -> None:
    # Given a Spot interruption of a made-up user's task on another cluster
    event = load_event("task_events_spot_interruption.json")
    task_id = event["detail"]["taskArn"].rsplit("/", 1)[-1]

    # When it acts as the demo user
    acting = impersonate(event, DEMO, Records())

    # Then the task's user is the demo user and its cluster the stack's; the task is still the event's
    detail = acting.event["detail"]
    [container] = detail["overrides"]["containerOverrides"]
    assert {pair["name"]: pair["value"] for pair in container["environment"]}["USER_ID"] == DEMO.user_id
    assert detail["clusterArn"] == CLUSTER
    assert detail["taskArn"] == f"arn:aws:ecs:us-east-1:123456789012:task/local-Cluster/{task_id}"
    assert acting.event["resources"] == [detail["taskArn"]]
    assert detail["stopCode"] == event["detail"]["stopCode"]
    assert task_id in acting.said


def test_a_wake_event_wakes_the_demo_users_agent() -> None:
    # Given the sample wake event of a warm window
    event = load_event("wake_window.json")

    # When invoke fills in the demo user
    acting = impersonate(event, DEMO, everything_recorded())

    # Then it wakes the demo user's agent, for the same reason
    assert acting.event == {"userId": DEMO.user_id, "reason": "window"}
    assert acting.said == f"acting as {DEMO}: the wake event's userId"
