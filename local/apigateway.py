"""What API Gateway's two stand-ins share (local/websocket_api.py, local/http_api.py): ids and times as
API Gateway writes them into the events it sends."""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime


def new_id() -> str:
    """A request or connection id shaped like API Gateway's: "bXbY4cVVIAMCJWg=" (11 random bytes, base64)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


def request_time(now: float) -> str:
    """A request's time as events carry it: "24/Jul/2026:10:15:30 +0000"."""
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
