"""Conversation history as the API pages it: newest first, with an opaque cursor to the next page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, newest first, and the cursor of the next page (None at the end)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


class InvalidCursor(ValueError):
    """A pagination cursor that was not issued for this listing."""

    def __init__(self) -> None:
        super().__init__("invalid cursor")
