"""Linking a Telegram account to a web account: one-time codes, the rules that guard them, and the link.

The web user asks for a code, sends `/link CODE` to the bot, and from then on their Telegram messages
reach the same agent, workspace and history. A Telegram user with no web account of their own may be
allowlisted instead; they get an agent of their own under the user id `telegram:{id}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"
"""No 0/O, 1/I/L or U: a code read aloud or off a phone cannot be mistyped into another valid one."""
CODE_LENGTH = 8
CODE_TTL_SECONDS = 600
MAX_LINK_FAILURES = 5
"""Wrong codes a Telegram user may try per window; then `/link` is refused until the window ends."""
LINK_FAILURE_WINDOW_SECONDS = 900
REFUSAL_QUIET_SECONDS = 3600
"""A stranger is told how to link once per hour at most; the bot is not a free message cannon."""

_CODE_INPUT = re.compile(r"[\s-]+")


def telegram_user_id(telegram_id: int) -> str:
    """The user id of a Telegram user who has no web account (allowlisted): `telegram:{id}`."""
    return f"telegram:{telegram_id}"


def normalise_code(raw: str) -> str | None:
    """The code as issued (upper case, no spaces or dashes), or None when it cannot be one of ours."""
    code = _CODE_INPUT.sub("", raw).upper()
    if len(code) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in code):
        return None
    return code


@dataclass(frozen=True, slots=True)
class LinkCode:
    """A one-time code a web user gives to the bot as `/link CODE`."""

    code: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class TelegramLink:
    """A web user's linked Telegram account."""

    user_id: str
    telegram_user_id: int
    chat_id: int
    username: str | None
    first_name: str | None
    linked_at: float

    def public(self) -> dict[str, Any]:
        """What the web user sees about their link."""
        return {
            "telegramUserId": self.telegram_user_id,
            "username": self.username,
            "firstName": self.first_name,
            "linkedAt": self.linked_at,
        }


@dataclass(frozen=True, slots=True)
class Redeemed:
    """Outcome of `/link CODE`: `user_id` on success, else `refusal` ("invalid", "rate_limited")."""

    user_id: str | None = None
    refusal: str | None = None
    retry_in_seconds: int = 0


@dataclass(frozen=True, slots=True)
class TelegramAccount:
    """Who is writing to the bot."""

    telegram_user_id: int
    chat_id: int
    username: str | None = None
    first_name: str | None = None
