"""A stand-in for Telegram: the Bot API a bot calls, and the users who write to it.

Bot side (`/bot{token}/{method}`): getMe, sendMessage, editMessageText, sendChatAction, setWebhook,
deleteWebhook, getWebhookInfo, answering as Telegram does (same envelopes, same error descriptions for a
wrong token, unknown message, unchanged edit, over-long text and HTML Telegram cannot parse). It records
every message the way the user's chat would show it. A rate limit can be switched on for the next calls.

User side: `deliver(user, text)` posts an Update to the registered webhook with the secret-token header,
exactly as Telegram does (and `redeliver` sends the same update again, as Telegram does after a failure),
over at most the webhook's `max_connections` requests at a time (Telegram's default is 40), in the order
the updates were made.
`POST /_local/updates` and `GET /_local/chats/{id}` offer the same to people and tests over HTTP, with
`POST /_local/updates/{update_id}/redeliver` and `POST /_local/faults` (a rate limit on the next calls);
the page at `/` is a small chat window for people.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

_PAGE = Path(__file__).with_name("telegram_page.html")
_ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "code",
    "pre",
    "a",
    "tg-spoiler",
    "span",
    "blockquote",
}
MAX_TEXT = 4096
DEFAULT_CONNECTIONS = 40
"""setWebhook's `max_connections` when a bot does not give one (Telegram allows 1-100)."""


class _EntityCheck(HTMLParser):
    """Telegram's HTML parse mode: known tags only, properly nested, `a` needs href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.error: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self.error = self.error or f'unsupported start tag "{tag}"'
        elif tag == "a" and not dict(attrs).get("href"):
            self.error = self.error or "can't find end of the entity: a without href"
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.error = self.error or f'unmatched end tag "{tag}"'
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def visible_text(text: str, parse_mode: str | None) -> tuple[str, str | None]:
    """(what the user sees, Telegram's parse error or None)."""
    if parse_mode != "HTML":
        return text, None
    check = _EntityCheck()
    check.feed(text)
    check.close()
    if check.error is None and check.open:
        check.error = f'can\'t find end tag corresponding to start tag "{check.open[-1]}"'
    if check.error:
        return text, f"Bad Request: can't parse entities: {check.error}"
    return html.unescape("".join(check.text)), None


@dataclass
class ChatMessage:
    """A message the bot sent, as the chat shows it now (and every text it had)."""

    message_id: int
    chat_id: int
    text: str
    parse_mode: str | None
    versions: list[str] = field(default_factory=list)


@dataclass
class TelegramSimulator:
    """One bot's Bot API and its users."""

    token: str
    bot_id: int = 7_000_000_001
    username: str = "openclaw_local_bot"
    messages: dict[int, list[ChatMessage]] = field(default_factory=dict)
    actions: list[tuple[int, str]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    webhook: dict[str, Any] = field(default_factory=dict)
    rate_limited_calls: int = 0
    retry_after: int = 1
    _message_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Telegram's update ids only grow; a new simulator must not repeat ids an earlier run used (the
    # webhook's dedup records outlive a restart of the local stack).
    _update_ids: itertools.count[int] = field(
        default_factory=lambda: itertools.count(100_000_000 + secrets.randbelow(1_900_000_000))
    )
    delivered: dict[int, dict[str, Any]] = field(default_factory=dict)
    _connections: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(DEFAULT_CONNECTIONS))

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/bot{token}/{method}", self._bot_api, methods=["GET", "POST"]),
                Route("/", self._page, methods=["GET"]),
                Route("/_local/updates", self._local_update, methods=["POST"]),
                Route("/_local/updates/{update_id:int}/redeliver", self._local_redeliver, methods=["POST"]),
                Route("/_local/chats/{chat_id:int}", self._local_chat, methods=["GET"]),
                Route("/_local/faults", self._local_faults, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------------------------ bot side

    async def _bot_api(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return _refuse(401, "Unauthorized")
        method = request.path_params["method"]
        try:
            raw = await request.body()
            params: dict[str, Any] = json.loads(raw) if raw else dict(request.query_params)
        except ValueError:
            return _refuse(400, "Bad Request: invalid JSON")
        self.calls.append((method, params))
        if self.rate_limited_calls > 0 and method != "getWebhookInfo":
            self.rate_limited_calls -= 1
            return _refuse(
                429, f"Too Many Requests: retry after {self.retry_after}", retry_after=self.retry_after
            )
        handler = {
            "getMe": self._get_me,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "sendChatAction": self._send_chat_action,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }.get(method)
        if handler is None:
            return _refuse(404, "Not Found: method not found")
        try:
            return JSONResponse({"ok": True, "result": handler(params)})
        except _Refused as refusal:
            return _refuse(400, refusal.description)

    def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "OpenClaw (local)",
            "username": self.username,
        }

    def _text(self, params: dict[str, Any]) -> tuple[str, str | None]:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Refused("Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        shown, error = visible_text(text, parse_mode)
        if error:
            raise _Refused(error)
        if len(shown) > MAX_TEXT:
            raise _Refused("Bad Request: message is too long")
        return shown, parse_mode

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        shown, parse_mode = self._text(params)
        message = ChatMessage(next(self._message_ids), chat_id, shown, parse_mode, [shown])
        self.messages.setdefault(chat_id, []).append(message)
        return self._message_result(message)

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params)
        found = [m for m in self.messages.get(chat_id, []) if m.message_id == params.get("message_id")]
        if not found:
            raise _Refused("Bad Request: message to edit not found")
        shown, parse_mode = self._text(params)
        message = found[0]
        if shown == message.text:
            raise _Refused(
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        message.text, message.parse_mode = shown, parse_mode
        message.versions.append(shown)
        return self._message_result(message)

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self.actions.append((_chat_id(params), str(params.get("action"))))
        return True

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str) or not url.startswith(
            ("https://", "http://127.0.0.1", "http://localhost")
        ):
            raise _Refused("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and (not isinstance(secret, str) or not 1 <= len(secret) <= 256):
            raise _Refused("Bad Request: secret token is invalid")
        connections = params.get("max_connections", DEFAULT_CONNECTIONS)
        if not isinstance(connections, int) or isinstance(connections, bool) or not 1 <= connections <= 100:
            raise _Refused("Bad Request: bad webhook: max_connections must be between 1 and 100")
        self.webhook = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": params.get("allowed_updates"),
            "max_connections": connections,
        }
        self._connections = asyncio.Semaphore(connections)
        return True

    def register_webhook(
        self,
        url: str,
        secret: str | None,
        *,
        allowed_updates: list[str] | None = None,
        max_connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        """setWebhook, as a bot's setup script calls it."""
        self._set_webhook(
            {
                "url": url,
                "secret_token": secret,
                "allowed_updates": allowed_updates,
                "max_connections": max_connections,
            }
        )

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        return True

    def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if self.webhook.get("url"):
            info["max_connections"] = self.webhook.get("max_connections", DEFAULT_CONNECTIONS)
        if self.webhook.get("allowed_updates"):
            info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _message_result(self, message: ChatMessage) -> dict[str, Any]:
        return {
            "message_id": message.message_id,
            "from": self._get_me({}),
            "chat": {"id": message.chat_id, "type": "private"},
            "date": int(time.time()),
            "text": message.text,
        }

    # ------------------------------------------------------------------------------------ user side

    def update(self, user_id: int, text: str, *, first_name: str = "Ada") -> dict[str, Any]:
        """An Update carrying a private text message from a user, as Telegram builds it."""
        return {
            "update_id": next(self._update_ids),
            "message": {
                "message_id": next(self._message_ids),
                "from": {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"},
                "chat": {"id": user_id, "type": "private", "first_name": first_name},
                "date": int(time.time()),
                "text": text,
            },
        }

    async def redeliver(self, update: dict[str, Any], *, secret: str | None = None) -> int:
        """POST an update to the webhook with the secret header (a different one to test forgeries)."""
        if not self.webhook.get("url"):
            raise RuntimeError("no webhook is set: run the webhook script (setWebhook) first")
        allowed = self.webhook.get("allowed_updates")
        kinds = [k for k in update if k != "update_id"]
        if allowed and not any(kind in allowed for kind in kinds):
            return 200  # Telegram never sends kinds the bot did not ask for
        headers = {"Content-Type": "application/json"}
        token = secret if secret is not None else self.webhook.get("secret_token")
        if token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = token
        # Semaphore waiters are served first come, first served: updates go out in the order they were made.
        async with self._connections, httpx.AsyncClient(timeout=60) as client:
            response = await client.post(self.webhook["url"], content=json.dumps(update), headers=headers)
        return response.status_code

    async def deliver(self, user_id: int, text: str) -> tuple[dict[str, Any], int]:
        """A user writes to the bot: the update, and the webhook's HTTP status."""
        update = self.update(user_id, text)
        self.delivered[update["update_id"]] = update
        return update, await self.redeliver(update)

    def chat(self, chat_id: int) -> list[str]:
        """The bot's messages in one chat, in order, as the user sees them now."""
        return [m.text for m in self.messages.get(chat_id, [])]

    async def _local_update(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            user_id, text = int(body["userId"]), str(body["text"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"message": 'expected {"userId": <int>, "text": "..."}'}, status_code=400)
        try:
            update, status = await self.deliver(user_id, text)
        except RuntimeError as exc:
            return JSONResponse({"message": str(exc)}, status_code=409)
        except httpx.HTTPError as exc:
            unreachable = f"the webhook is unreachable ({type(exc).__name__})"
            return JSONResponse({"message": unreachable}, status_code=502)
        return JSONResponse(
            {
                "updateId": update["update_id"],
                "messageId": update["message"]["message_id"],
                "webhookStatus": status,
            }
        )

    async def _local_redeliver(self, request: Request) -> Response:
        update = self.delivered.get(request.path_params["update_id"])
        if update is None:
            return JSONResponse({"message": "no such update was delivered"}, status_code=404)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = {}
        secret = body.get("secret") if isinstance(body, dict) else None
        status = await self.redeliver(update, secret=secret if isinstance(secret, str) else None)
        return JSONResponse({"updateId": update["update_id"], "webhookStatus": status})

    async def _local_faults(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
            calls, retry_after = int(body.get("rateLimitedCalls", 0)), int(body.get("retryAfter", 1))
        except (ValueError, TypeError, AttributeError):
            expected = 'expected {"rateLimitedCalls": n, "retryAfter": s}'
            return JSONResponse({"message": expected}, status_code=400)
        if calls < 0 or not 0 <= retry_after <= 120:
            return JSONResponse({"message": "rateLimitedCalls >= 0, retryAfter 0-120"}, status_code=400)
        self.rate_limited_calls, self.retry_after = calls, retry_after
        return JSONResponse({"rateLimitedCalls": calls, "retryAfter": retry_after})

    async def _page(self, request: Request) -> Response:
        return HTMLResponse(_PAGE.read_text().replace("{bot}", html.escape(self.username)))

    async def _local_chat(self, request: Request) -> Response:
        chat_id = request.path_params["chat_id"]
        return JSONResponse(
            {
                "messages": [
                    {
                        "messageId": m.message_id,
                        "text": m.text,
                        "parseMode": m.parse_mode,
                        "edits": len(m.versions) - 1,
                    }
                    for m in self.messages.get(chat_id, [])
                ],
                "typing": sum(1 for c, a in self.actions if c == chat_id and a == "typing"),
            }
        )


class _Refused(Exception):
    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _chat_id(params: dict[str, Any]) -> int:
    try:
        return int(params["chat_id"])
    except (KeyError, TypeError, ValueError):
        raise _Refused("Bad Request: chat not found") from None


def _refuse(status: int, description: str, **parameters: Any) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)
