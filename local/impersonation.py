"""Whom `python -m local invoke` acts as: the running stack's demo user, put into a sample event.

The files in `events/` name made-up people (a JWT `sub`, connection ids, a Telegram account, a task's
user), so that `sam local invoke` and the unit tests have fixed inputs. The running local stack knows
none of them, so `invoke` puts its demo user where each kind of event carries the user:

- HTTP API behind the JWT authorizer: `requestContext.authorizer.jwt.claims.sub`.
- WebSocket `$default`: `requestContext.connectionId` becomes an open connection of the demo user, of
  the kind that sends such a frame (a heartbeat comes from the agent's bridge, the rest from a browser).
- Telegram webhook: the sender (`from.id`, and the chat of a private chat) becomes the Telegram account
  the demo user linked, and the secret header the stack's webhook secret.
- A wake event (EventBridge Scheduler → the wake function): its `userId`.
- ECS task state change: the task's user (its `USER_ID` override, and any tag naming that user) becomes
  the demo user and its cluster the stack's. The task stays the event's own: the demo user's running
  agent is never reported stopped.

`$connect` and `$disconnect` go as they are: the first authenticates the credentials in the event (the
samples' placeholders are refused), and the second, given a real connection, would cut that browser off
from its replies. A scheduled event names no user. Whatever the kind, `said` tells whom the call acts as.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from serverless_openclaw import protocol

WEBHOOK_SECRET_HEADER = "x-telegram-bot-api-secret-token"
TASK_USER_VARIABLE = "USER_ID"
"""The container variable the launcher tells the bridge its user in (RunTask's container overrides)."""

ConnectionKind = Literal["client", "agent"]


@dataclass(frozen=True)
class DemoUser:
    """The user `make dev` created and printed the login of."""

    user_id: str
    username: str

    def __str__(self) -> str:
        return f"{self.username} (user {self.user_id})"


@dataclass(frozen=True)
class TelegramChat:
    """A Telegram account linked to a web user, and its private chat with the bot."""

    user_id: int
    chat_id: int


class UserRecords(Protocol):
    """What the running stack has recorded about a user."""

    def open_connection(self, user_id: str, kind: ConnectionKind) -> str | None:
        """The newest open WebSocket connection of the user, of that kind."""

    def linked_telegram(self, user_id: str) -> TelegramChat | None:
        """The Telegram account the user linked, if any."""

    def webhook_secret(self) -> str | None:
        """The secret Telegram sends with every update to the stack's webhook."""

    def cluster_arn(self) -> str:
        """The ECS cluster the stack runs agents on."""


@dataclass(frozen=True)
class Impersonation:
    """The event to invoke with, and one line saying whom it acts as."""

    event: dict[str, Any]
    said: str


def impersonate(event: dict[str, Any], user: DemoUser, records: UserRecords) -> Impersonation:
    """The event acting as the demo user wherever its kind carries a user (the input is not changed)."""
    event = copy.deepcopy(event)
    context = event.get("requestContext")
    if isinstance(context, dict):
        claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims")
        if isinstance(claims, dict):
            claims["sub"] = user.user_id
            return Impersonation(event, f"acting as {user}: the JWT claims' sub")
        if context.get("eventType") == "MESSAGE":
            return _websocket_frame(event, context, user, records)
        if context.get("eventType") in ("CONNECT", "DISCONNECT"):
            return Impersonation(event, _websocket_lifecycle(context, user))
        if _telegram_update(event) is not None:
            return _telegram(event, user, records)
    if event.get("detail-type") == "ECS Task State Change" and isinstance(event.get("detail"), dict):
        return _task_event(event, user, records)
    if isinstance(event.get("userId"), str) and "reason" in event:
        event["userId"] = user.user_id
        return Impersonation(event, f"acting as {user}: the wake event's userId")
    return Impersonation(event, "acting as no one in particular: this event names no user")


def _websocket_frame(
    event: dict[str, Any], context: dict[str, Any], user: DemoUser, records: UserRecords
) -> Impersonation:
    kind: ConnectionKind = "agent" if _is_heartbeat(event.get("body")) else "client"
    connection = records.open_connection(user.user_id, kind)
    if connection is not None:
        context["connectionId"] = connection
        through = "their agent's connection" if kind == "agent" else "their open web chat connection"
        return Impersonation(event, f"acting as {user} through {through} {connection}")
    missing = (
        "their agent is not connected (a message starts it)"
        if kind == "agent"
        else "they have no open web chat (sign in to it)"
    )
    return Impersonation(
        event,
        f"not acting as {user}: {missing}, so this acts as the event's own connection "
        f"{context.get('connectionId')}",
    )


def _is_heartbeat(body: Any) -> bool:
    try:
        return isinstance(protocol.parse_frame(body if isinstance(body, str) else None), protocol.Heartbeat)
    except protocol.ProtocolError:
        return False


def _websocket_lifecycle(context: dict[str, Any], user: DemoUser) -> str:
    if context["eventType"] == "CONNECT":
        return (
            f"not acting as {user}: $connect signs in whoever the event's credentials name (the ID token in "
            "`token`, or an agent's X-Agent-* headers), and a sample's placeholders are refused"
        )
    connection = context.get("connectionId")
    return (
        f"not acting as {user}: this $disconnect is for the event's connection {connection}; for a real "
        "connection it would cut that browser off from its replies"
    )


def _telegram_update(event: dict[str, Any]) -> dict[str, Any] | None:
    body = event.get("body")
    if not isinstance(body, str) or event.get("isBase64Encoded"):
        return None
    try:
        update = json.loads(body)
    except ValueError:
        return None
    return update if isinstance(update, dict) and "update_id" in update else None


def _telegram(event: dict[str, Any], user: DemoUser, records: UserRecords) -> Impersonation:
    _put_webhook_secret(event, records.webhook_secret())
    update = _telegram_update(event) or {}
    sent = _sent(update)
    linked = records.linked_telegram(user.user_id)
    if linked is None:
        senders = ", ".join(sorted({str(part["from"].get("id")) for part in sent})) or "nobody"
        return Impersonation(
            event,
            f"not acting as {user}: they have linked no Telegram account (the web chat's settings give a "
            f"code for /link), so this acts as the event's Telegram user {senders}",
        )
    for part in sent:
        part["from"]["id"] = linked.user_id
        if (part.get("chat") or {}).get("type") == "private":
            part["chat"]["id"] = linked.chat_id
    event["body"] = json.dumps(update, ensure_ascii=False)
    return Impersonation(event, f"acting as {user} through their linked Telegram account {linked.user_id}")


def _put_webhook_secret(event: dict[str, Any], secret: str | None) -> None:
    headers = event.get("headers")
    if isinstance(headers, dict) and secret is not None:
        for name in [n for n in headers if n.lower() == WEBHOOK_SECRET_HEADER]:
            headers[name] = secret


def _sent(update: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts of an update that carry a sender (`message`, `edited_message`, `callback_query`, …)."""
    return [part for part in update.values() if isinstance(part, dict) and isinstance(part.get("from"), dict)]


def _task_event(event: dict[str, Any], user: DemoUser, records: UserRecords) -> Impersonation:
    named = _task_users(event["detail"])
    if not named:
        return Impersonation(event, "acting as no one in particular: this task names no user")
    event = _strings(event, lambda text: user.user_id if text in named else text)
    event = _on_cluster(event, str(event["detail"].get("clusterArn") or ""), records.cluster_arn())
    task = str(event["detail"].get("taskArn", "")).rsplit("/", 1)[-1]
    return Impersonation(
        event,
        f"acting as {user} as the user of the event's task {task} on the stack's cluster; the task stays "
        "the event's own, so a running agent of theirs is not touched",
    )


def _task_users(detail: dict[str, Any]) -> set[str]:
    """The users a task's container overrides name."""
    return {
        str(pair["value"])
        for container in (detail.get("overrides") or {}).get("containerOverrides") or []
        for pair in container.get("environment") or []
        if pair.get("name") == TASK_USER_VARIABLE and pair.get("value")
    }


def _on_cluster(event: dict[str, Any], old: str, new: str) -> Any:
    """The event with its cluster `old` replaced by `new`, in every task and container ARN too."""
    if not old or old == new:
        return event
    old_name, new_name = old.rsplit("/", 1)[-1], new.rsplit("/", 1)[-1]
    return _strings(
        event, lambda text: new if text == old else text.replace(f"/{old_name}/", f"/{new_name}/")
    )


def _strings(value: Any, change: Callable[[str], str]) -> Any:
    """`value` with `change` applied to every string in it (keys are left as they are)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_strings(item, change) for item in value]
    if isinstance(value, dict):
        return {key: _strings(item, change) for key, item in value.items()}
    return value
