"""How long a user's agent takes to start, phase by phase, from that user's own recent starts
(docs/architecture.md, Lifecycle of a message; docs/decisions.md, "Start ETAs from the user's own starts").

A start goes through the phases the user is shown, in order: `provisioning` (Fargate finds a machine, until
ECS reports the image pull started), `pulling` (the image pull, until the bridge runs), `restoring` (the
bridge reads its secrets and restores OpenClaw's state), `booting` (OpenClaw starts and the bridge
connects). The bridge measures each one when the agent becomes Running and keeps the last few in TaskState;
the ETA shown during the next start is the median of each phase over those, and the stack's default split
over the phases only while there is no history. `pulling` is optional in a start: one whose pull ECS did not
report in time (or recorded before the phase existed) counts its pull in `provisioning`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PHASES = ("provisioning", "pulling", "restoring", "booting")
"""The start-up phases a user is shown, in order."""

OPTIONAL_PHASES = frozenset({"pulling"})
"""Phases a start may lack: its time is then inside the phase before it (the pull inside provisioning)."""

_REQUIRED_PHASES = tuple(p for p in PHASES if p not in OPTIONAL_PHASES)

KEPT_STARTS = 5
"""How many recent starts a user's ETA is computed from (a median over few is robust to one slow start)."""

LONGEST_PHASE_SECONDS = 3600.0
"""A phase measured longer than this is a clock error, not a start: it is not kept."""

_PHASE_WORDS = {
    "provisioning": "finding a machine",
    "pulling": "fetching the agent",
    "restoring": "restoring your files",
    "booting": "starting OpenClaw",
}

# How the stack's default start time splits over the phases while a user has no history of their own:
# OpenClaw's boot is the bulk (docs/architecture.md), provisioning and the image pull come next.
_DEFAULT_SHARES = {"provisioning": 0.2, "pulling": 0.15, "restoring": 0.1, "booting": 0.55}


@dataclass(frozen=True, slots=True)
class StartEstimate:
    """Expected seconds per phase, and whether they come from the user's own starts."""

    seconds: Mapping[str, float]
    from_history: bool

    @property
    def total(self) -> float:
        """The expected length of a whole start."""
        return sum(self.seconds.values())

    def remaining(self, phase: str, in_phase: float) -> float:
        """Seconds left when `phase` has run for `in_phase` seconds: what is left of it (never below
        zero: a slow phase holds the ETA rather than pushing it up), plus every later phase."""
        if phase not in PHASES:
            raise ValueError(f"unknown start phase {phase!r} (one of {', '.join(PHASES)})")
        index = PHASES.index(phase)
        later = sum(self.seconds[p] for p in PHASES[index + 1 :])
        return max(0.0, self.seconds[phase] - max(0.0, in_phase)) + later


def phase_text(phase: str | None) -> str:
    """The phase in words, for Telegram's waiting message (the web chat has its own, in status.js)."""
    return _PHASE_WORDS.get(phase or "", "starting")


def waiting_text(phase: str | None, eta_seconds: int) -> str:
    """Telegram's waiting message during a start: the phase and the seconds left."""
    return f"⏳ Waking up your agent: {phase_text(phase)} (about {eta_seconds} s left)…"


def estimate(starts: Sequence[Mapping[str, float]], default_seconds: float) -> StartEstimate:
    """The expected start of a user with these recent starts (oldest first): each phase's median over them,
    or `default_seconds` split over the phases when there are none. An optional phase's median is over the
    starts that have it; none has it (old history, pulls never reported): 0 s, its time is in the phase
    before it."""
    if not starts:
        return StartEstimate({p: default_seconds * _DEFAULT_SHARES[p] for p in PHASES}, from_history=False)
    seconds = {}
    for phase in PHASES:
        measured = [s[phase] for s in starts if phase in s]
        seconds[phase] = float(statistics.median(measured)) if measured else 0.0
    return StartEstimate(seconds, from_history=True)


def recorded(starts: Sequence[Mapping[str, float]], durations: Mapping[str, float]) -> list[dict[str, float]]:
    """The history to keep after a start that took `durations`: the last KEPT_STARTS starts, oldest first.
    A start missing a phase, or with one no clock could have measured, is not kept (it would skew the ETA)."""
    start = {p: round(float(durations[p]), 1) for p in PHASES if p in durations}
    kept = [dict(s) for s in starts]
    if _complete(start):
        kept.append(start)
    return kept[-KEPT_STARTS:]


def readable_starts(value: object) -> tuple[dict[str, float], ...]:
    """The recent starts as a stored row holds them; anything of another shape reads as no start (a row
    another version wrote must still read)."""
    if not isinstance(value, list):
        return ()
    starts = []
    for start in value:
        if not isinstance(start, dict):
            continue
        phases = {p: float(v) for p, v in start.items() if p in PHASES and isinstance(v, int | float)}
        if not any(isinstance(start.get(p), bool) for p in PHASES) and _complete(phases):
            starts.append(phases)
    return tuple(starts[-KEPT_STARTS:])


def _complete(start: Mapping[str, float]) -> bool:
    """A start worth keeping: every required phase, and no phase a clock could not have measured."""
    return all(p in start for p in _REQUIRED_PHASES) and all(
        0.0 <= v <= LONGEST_PHASE_SECONDS for v in start.values()
    )
