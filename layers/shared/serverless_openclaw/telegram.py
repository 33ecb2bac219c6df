"""Telegram Bot API client: what the webhook and the bridge send, and how replies are shaped for Telegram.

Stdlib HTTP only (the layer stays lean). The base URL is configurable (`TELEGRAM_API_BASE`, default
`https://api.telegram.org`) so the local stack's simulator can stand in. Rate limits are honoured: a 429
waits the `retry_after` Telegram names; 5xx and network errors are retried with backoff; a 400 is final.
The bot token is part of every URL, so URLs are never logged and errors never carry them.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.aws.parameters import read_secure
from serverless_openclaw.config import TelegramConfig
from serverless_openclaw.observability import logger

DEFAULT_API_BASE = "https://api.telegram.org"
MAX_MESSAGE_CHARS = 4096
"""Telegram's limit for one message's text (after entity parsing; we split the source below it)."""

_MAX_RETRY_AFTER = 60.0
"""Longer waits are not worth holding a reply (or a Lambda) for: the call fails and says so."""


@dataclass
class CachedParameter:
    """An SSM SecureString read at most once per `ttl` (rotation takes effect within it); None if unset."""

    name: str
    ttl: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _value: str | None = None
    _read_at: float = field(default=-1e18)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, *, max_age: float | None = None) -> str | None:
        """The value, re-read when older than `max_age` (default: the ttl)."""
        limit = self.ttl if max_age is None else max_age
        with self._lock:
            if self.clock() - self._read_at >= limit:
                self._value = self._read()
                self._read_at = self.clock()
            return self._value

    def _read(self) -> str | None:
        return read_secure(client("ssm"), self.name)


class BotAccess:
    """The bot's Bot API client, made on first use from the token in SSM; None while no token is set.

    The webhook, the bridge and the give-up notices all reach the bot this way, so a function that never
    talks to Telegram never reads the token.
    """

    def __init__(self, token_parameter: str, api_base: str, *, attempts: int = 4) -> None:
        self.token_parameter = token_parameter
        self.api_base = api_base
        self.attempts = attempts
        self.make: Callable[[str, str], TelegramClient] = lambda token, base: TelegramClient(
            token, api_base=base, attempts=self.attempts
        )
        self._token = CachedParameter(token_parameter)
        self._client: TelegramClient | None = None

    def client(self) -> TelegramClient | None:
        """The client, or None when the token is not configured (asked again next time)."""
        if self._client is None:
            token = self._token.get()
            if token:
                self._client = self.make(token, self.api_base)
        return self._client


class TelegramNotifier:
    """One-off notices in users' Telegram chats from functions other than the webhook (a start given up)."""

    def __init__(self, config: TelegramConfig) -> None:
        self._bot = BotAccess(config.token_parameter, config.api_base, attempts=2)

    def notify(self, targets: Iterable[tuple[int, int | None]], text: str) -> int:
        """Edit each (chat, waiting message) into `text`, or send it; failures are logged. How many got it."""
        told = 0
        for chat_id, message_id in targets:
            try:
                bot = self._bot.client()
                if bot is None:
                    return 0
                if message_id is not None:
                    bot.edit_message_text(chat_id, message_id, text)
                else:
                    bot.send_message(chat_id, text)
                told += 1
            except (TelegramError, ClientError, OSError) as exc:
                logger.warning("telegram notice failed", error=str(exc))
        return told


class TelegramError(Exception):
    """A Bot API call failed; `description` is Telegram's own words (never the token)."""

    def __init__(
        self, method: str, status: int, description: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{method}: {status} {description}")
        self.method = method
        self.status = status
        self.description = description
        self.retry_after = retry_after

    @property
    def is_markup_error(self) -> bool:
        """Telegram could not parse the message's HTML/Markdown entities."""
        return self.status == 400 and "can't parse entities" in self.description.lower()

    @property
    def is_not_modified(self) -> bool:
        """An edit that would not change the message (harmless when streaming)."""
        return self.status == 400 and "message is not modified" in self.description.lower()


Transport = Callable[[str, bytes, float], tuple[int, bytes]]
"""(url, JSON body, timeout) → (HTTP status, body); replaceable in tests."""


def _urllib_transport(url: str, body: bytes, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        # The URL is the configured API base (https, or the local stack's simulator), never user input.
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read() or b"")


@dataclass
class TelegramClient:
    """One bot's Bot API calls, with Telegram's rate limits and transient failures handled."""

    token: str
    api_base: str = DEFAULT_API_BASE
    timeout: float = 10.0
    attempts: int = 4
    backoff: float = 0.5
    transport: Transport = _urllib_transport
    sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:  # the token must not end up in logs through a repr
        return f"TelegramClient(api_base={self.api_base!r})"

    def call(self, method: str, **params: Any) -> Any:
        """Call a Bot API method; its `result`, or TelegramError once retries are exhausted or pointless."""
        url = f"{self.api_base.rstrip('/')}/bot{self.token}/{method}"
        body = json.dumps({k: v for k, v in params.items() if v is not None}).encode()
        last: TelegramError | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                status, raw = self.transport(url, body, self.timeout)
            except OSError as exc:  # URLError and timeouts are OSErrors
                last = TelegramError(method, 0, f"network error ({type(exc).__name__})")
            else:
                error = _error(method, status, raw)
                if error is None:
                    return json.loads(raw)["result"]
                last = error
                if self._waited_out(error):
                    continue
                if status < 500:
                    raise error
            if attempt < self.attempts:
                self.sleep(self.backoff * 2 ** (attempt - 1))
        if last is None:
            raise ValueError(f"{method} was not attempted: attempts must be at least 1, got {self.attempts}")
        logger.warning("telegram call failed", method=method, status=last.status, error=last.description)
        raise last

    def _waited_out(self, error: TelegramError) -> bool:
        """After a rate limit, wait as long as Telegram asks (True); False for other errors; the error
        itself when the wait is longer than is worth holding a reply for."""
        if error.status != 429 or error.retry_after is None:
            return False
        if error.retry_after > _MAX_RETRY_AFTER:
            raise error
        logger.info("telegram rate limit, waiting", method=error.method, retry_after=error.retry_after)
        self.sleep(error.retry_after)
        return True

    # ------------------------------------------------------------------------------------ methods

    def send_message(self, chat_id: int | str, text: str, *, html_text: bool = False) -> int:
        """Send a text message; its message_id."""
        result = self.call(
            "sendMessage",
            chat_id=chat_id,
            text=text,
            parse_mode="HTML" if html_text else None,
            link_preview_options={"is_disabled": True},
        )
        return int(result["message_id"])

    def edit_message_text(
        self, chat_id: int | str, message_id: int, text: str, *, html_text: bool = False
    ) -> None:
        """Replace a message's text; an edit that changes nothing is not an error."""
        try:
            self.call(
                "editMessageText",
                chat_id=chat_id,
                message_id=message_id,
                text=text,
                parse_mode="HTML" if html_text else None,
                link_preview_options={"is_disabled": True},
            )
        except TelegramError as exc:
            if not exc.is_not_modified:
                raise

    def send_chat_action(self, chat_id: int | str, action: str = "typing") -> None:
        """Show "typing…" (Telegram clears it after 5 s or at the next message)."""
        self.call("sendChatAction", chat_id=chat_id, action=action)

    def send_formatted(self, chat_id: int | str, markdown: str) -> int:
        """Send Markdown as Telegram HTML; plain text when Telegram rejects the markup."""
        try:
            return self.send_message(chat_id, markdown_to_html(markdown), html_text=True)
        except TelegramError as exc:
            if not exc.is_markup_error:
                raise
            logger.info("telegram refused the markup, sending plain text", chat_id=str(chat_id))
            return self.send_message(chat_id, markdown)

    def edit_formatted(self, chat_id: int | str, message_id: int, markdown: str) -> None:
        """Edit a message to Markdown rendered as Telegram HTML; plain text when the markup is refused."""
        try:
            self.edit_message_text(chat_id, message_id, markdown_to_html(markdown), html_text=True)
        except TelegramError as exc:
            if not exc.is_markup_error:
                raise
            self.edit_message_text(chat_id, message_id, markdown)


def _error(method: str, status: int, raw: bytes) -> TelegramError | None:
    """None for a successful answer; else the error, in Telegram's words where it gave any."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if 200 <= status < 300 and isinstance(data, dict) and data.get("ok") is True and "result" in data:
        return None
    description, retry_after = _failure(data) if isinstance(data, dict) else ("bad body", None)
    return TelegramError(method, status if status >= 300 else 502, description[:300], retry_after=retry_after)


def _failure(data: dict[str, Any]) -> tuple[str, float | None]:
    """Telegram's description of a failure, and how long it asks us to wait (None: no wait)."""
    parameters = data.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    return (
        str(data.get("description") or "no description"),
        float(retry_after) if isinstance(retry_after, int | float) else None,
    )


# --------------------------------------------------------------------------------------------------------
# Shaping replies for Telegram
# --------------------------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])|(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"
)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+)$", re.M)


def markdown_to_html(text: str) -> str:
    """The Markdown models write, as the HTML subset Telegram accepts (b, i, s, code, pre, a).

    Everything else is escaped, so the result is always valid for Telegram unless a construct is nested
    in a way Telegram refuses; callers fall back to plain text then.
    """
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    # Code first: nothing inside it is formatting.
    text = _FENCE.sub(lambda m: keep(f"<pre>{html.escape(m.group(1).rstrip(), quote=False)}</pre>"), text)
    text = _INLINE_CODE.sub(lambda m: keep(f"<code>{html.escape(m.group(1), quote=False)}</code>"), text)
    text = _LINK.sub(
        lambda m: keep(f'<a href="{html.escape(m.group(2))}">{html.escape(m.group(1), quote=False)}</a>'),
        text,
    )
    text = html.escape(text, quote=False)
    text = _HEADING.sub(lambda m: f"<b>{m.group(1)}</b>", text)
    text = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", text)
    text = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", text)
    text = _STRIKE.sub(lambda m: f"<s>{m.group(1)}</s>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: stash[int(m.group(1))], text)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Pieces of at most `limit` characters, cut at paragraph, then line, then word boundaries."""
    if limit < 1:
        raise ValueError("limit must be positive")
    return [piece for piece in _pieces(text, limit) if piece.strip()] or ([text] if text else [])


def _pieces(text: str, limit: int) -> Iterator[str]:
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator, 0, limit + 1)
            if cut > 0:
                break
        if cut <= 0:
            cut = limit  # one unbroken run longer than a message: a hard cut is all that is left
            yield rest[:cut]
            rest = rest[cut:]
            continue
        yield rest[:cut].rstrip()
        rest = rest[cut:].lstrip("\n ")
    yield rest
