"""The user's agent task as the launcher reports it: what a start gives back, and why one failed."""

from __future__ import annotations

from dataclasses import dataclass

from serverless_openclaw.lifecycle import Capacity

USER_TAG = "serverless-openclaw:user"
"""The tag every agent task carries with its user's id (how a task found without its row is traced back)."""


class StartError(RuntimeError):
    """The task did not start; `reason` is readable and safe to show the stack's owner.

    `capacity` is True when the capacity provider had no room (a Spot start may then retry on-demand).
    """

    def __init__(self, reason: str, *, capacity: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.capacity = capacity


@dataclass(frozen=True, slots=True)
class Launched:
    """A task the launcher started."""

    task_arn: str
    capacity: Capacity
