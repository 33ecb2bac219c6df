"""A wake schedule as the domain asks for one (aws/scheduler.py writes it): when it fires, on whose clocks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Wanted:
    """One schedule a user should have: a Scheduler expression and the IANA zone it is read in."""

    expression: str
    timezone: str
