"""User settings: what may be set and how each value is validated (stored in the Settings table)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

SUPPORTED_PROVIDERS = ("anthropic", "openai", "openai-compatible", "offline")
"""Model providers the bridge can configure OpenClaw for."""

UNAVAILABLE_PROVIDERS: Mapping[str, str] = {
    "bedrock": (
        "Amazon Bedrock is not available: the pinned OpenClaw reaches it only through its plugin "
        "@openclaw/amazon-bedrock-provider, which is not published on npm, so the bridge image cannot "
        "include it; use anthropic, openai or an openai-compatible endpoint"
    ),
}
"""Providers people ask for that the bridge refuses, with the reason it gives (docs/decisions.md)."""

IDLE_TIMEOUT_RANGE = (5, 240)
WAKE_ON_INTENT = "wakeOnIntent"
"""Start the agent when the person opens the chat or starts typing (a `warm` frame), before the first
message; on unless turned off. An agent woken so and not written to stops after the warm idle timeout."""
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")


class InvalidSettings(ValueError):
    """One or more settings were refused; `problems` maps each field to a readable reason."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))
        self.problems = dict(problems)


def defaults(idle_timeout_minutes: int) -> dict[str, Any]:
    """Values a user who never changed anything sees."""
    return {
        "model": None,
        "idleTimeoutMinutes": idle_timeout_minutes,
        "timezone": "UTC",
        WAKE_ON_INTENT: True,
    }


def validate(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check a settings update; returns the normalised values or raises InvalidSettings."""
    problems: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for key, val in changes.items():
        check = _CHECKS.get(key)
        problem = check(val) if check else "is not a setting"
        if problem:
            problems[key] = problem
        else:
            clean[key] = val
    if problems:
        raise InvalidSettings(problems)
    if not clean:
        raise InvalidSettings({"settings": "nothing to change"})
    return clean


def _idle_timeout_problem(val: Any) -> str | None:
    low, high = IDLE_TIMEOUT_RANGE
    if isinstance(val, bool) or not isinstance(val, int) or not low <= val <= high:
        return f"must be a whole number of minutes from {low} to {high}"
    return None


def _model_problem(val: Any) -> str | None:
    if not isinstance(val, str) or "/" not in val:
        return "must be '<provider>/<model id>', e.g. anthropic/claude-sonnet-4-5"
    provider, model_id = val.split("/", 1)
    if provider in UNAVAILABLE_PROVIDERS:
        return UNAVAILABLE_PROVIDERS[provider]
    if provider not in SUPPORTED_PROVIDERS:
        return "provider must be one of " + ", ".join(SUPPORTED_PROVIDERS)
    if not _MODEL_ID.fullmatch(model_id):
        return "model id has characters that are not allowed"
    return None


def _timezone_problem(val: Any) -> str | None:
    if not isinstance(val, str) or not _is_timezone(val):
        return "must be an IANA time zone such as Europe/Paris"
    return None


def _wake_on_intent_problem(val: Any) -> str | None:
    return None if isinstance(val, bool) else "must be true or false"


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "idleTimeoutMinutes": _idle_timeout_problem,
    "model": _model_problem,
    "timezone": _timezone_problem,
    WAKE_ON_INTENT: _wake_on_intent_problem,
}
"""Every setting a user may change, and what is wrong with a value for it (None: nothing)."""


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _is_timezone(name: str) -> bool:
    if name not in _zones():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def idle_timeout_for(settings: Mapping[str, Any], default_minutes: int) -> int:
    """The user's idle timeout, falling back to the stack default."""
    val = settings.get("idleTimeoutMinutes")
    low, high = IDLE_TIMEOUT_RANGE
    return val if isinstance(val, int) and low <= val <= high else default_minutes


def wake_on_intent_for(stored: Any) -> bool:
    """Whether wake on intent is on for a user, from their stored value (on unless stored as false)."""
    return stored is not False
