"""OpenClaw session keys: one session per conversation, spelled the way the gateway's events spell it."""

from __future__ import annotations

import hashlib
import re

MAX_SESSION_KEY_LENGTH = 512

_ULID = re.compile(r"[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}")


def session_key_for(conversation_id: str) -> str:
    """The canonical OpenClaw session key of one conversation: `agent:main:conversation:{conversation_id}`.

    The key does not name the channel: a conversation begun on Telegram and continued in the web chat is
    one session, so the agent keeps its context (and a `telegram` segment could make OpenClaw think its
    own Telegram channel owns the session).

    OpenClaw lower-cases session keys and emits its chat events under the lower-cased key, so the key is
    lower-case here too. ULIDs are case-insensitive by definition; any other id with capitals gets a short
    hash of its original spelling, so `Plan` and `plan` stay two sessions.
    """
    if not conversation_id or not conversation_id.strip():
        raise ValueError("conversation_id must not be empty")
    lowered = conversation_id.lower()
    if lowered != conversation_id and not _ULID.fullmatch(conversation_id):
        lowered += "-" + hashlib.sha256(conversation_id.encode()).hexdigest()[:8]
    key = f"agent:main:conversation:{lowered}"
    check_session_key(key)
    return key


def check_session_key(session_key: str) -> None:
    """Refuse a key whose events could not be routed: not canonical, not lower-case, or too long."""
    # Events carry canonical keys only; a bare key would be canonicalised by the gateway and its events
    # would never match the key we route on.
    if not session_key.startswith("agent:") or len(session_key.split(":")) < 3:
        raise ValueError("session key must be canonical: agent:<agentId>:<rest>")
    if session_key != session_key.lower():
        raise ValueError("session key must be lower-case (the gateway's events carry the lower-cased key)")
    if len(session_key) > MAX_SESSION_KEY_LENGTH:
        raise ValueError(f"session key longer than {MAX_SESSION_KEY_LENGTH} characters")
