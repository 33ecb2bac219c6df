"""Who is connected to the WebSocket API: a client (a browser tab) or an agent (the user's bridge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["client", "agent"]


@dataclass(frozen=True, slots=True)
class Connection:
    """One open WebSocket connection."""

    connection_id: str
    user_id: str
    kind: Kind
    connected_at: float
    task_arn: str | None = None
