"""How a bridge proves which task it is when it dials the WebSocket API: three headers, and a token whose
sha256 is all TaskState keeps. Standard library only, so the bridge can import it without PyJWT."""

from __future__ import annotations

import hashlib
import hmac

AGENT_USER_HEADER = "x-agent-user"
AGENT_TASK_HEADER = "x-agent-task-arn"
AGENT_TOKEN_HEADER = "x-agent-token"


def hash_agent_token(token: str) -> str:
    """The sha256 hex digest under which an agent token is stored in TaskState."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def agent_token_matches(token: str | None, expected_hash: str | None) -> bool:
    """Whether a presented agent token has the stored hash, compared in constant time."""
    if not token or not expected_hash:
        return False
    # Bytes, because compare_digest refuses non-ASCII str (a tampered row must not raise).
    return hmac.compare_digest(hash_agent_token(token).encode(), expected_hash.encode("utf-8"))
