"""Sortable unique ids (ULIDs) for messages and conversations."""

from __future__ import annotations

from ulid import ULID


def new_id() -> str:
    """A new ULID string: unique, and sorts by creation time."""
    return str(ULID())
