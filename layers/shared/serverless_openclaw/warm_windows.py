"""Warm windows: the hours of chosen weekdays, in the user's time zone, when their agent is kept awake.

A window is started by an EventBridge Scheduler schedule at its start (one `cron()` per window, in the
user's zone: aws/scheduler.py), and while it lasts the watchdog does not stop the agent for idleness
(watchdog.py). Outside every window the user's idle timeout applies as before.

The stored form is what the user sent, once `problems` found nothing wrong with it:
`[{"days": ["mon", "tue"], "start": "08:00", "end": "18:00"}, …]`. An `end` earlier than `start` means
the window runs past midnight and ends on the next day; `"24:00"` is the end of the day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from serverless_openclaw import prices

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday names as the settings spell them, Monday first (datetime.weekday() order)."""
MAX_WINDOWS = 7
"""At most this many windows per user (one schedule each)."""
OPENING_SECONDS = 300
"""A window opening within this many seconds counts as open: a wake a little early (clocks disagree) is
honoured, and the watchdog does not stop an idle agent a window is about to keep (its start would find
the agent Stopping and could not start another)."""
WEEKS_PER_MONTH = 365.25 / 7 / 12
"""An average month, for hours a month from hours a week."""

_MINUTES_PER_DAY = 24 * 60
_MINUTES_PER_WEEK = 7 * _MINUTES_PER_DAY
_TIME = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
_KEYS = frozenset({"days", "start", "end"})


@dataclass(frozen=True, slots=True)
class Window:
    """One window: the weekdays it starts on (0 = Monday) and its start and end, in minutes of the day."""

    days: tuple[int, ...]
    start: int
    end: int
    """1–1440; at or before `start` when the window ends on the next day."""

    @property
    def minutes(self) -> int:
        """How long the window lasts."""
        return self.end - self.start if self.end > self.start else self.end + _MINUTES_PER_DAY - self.start


@dataclass(frozen=True, slots=True)
class TaskSize:
    """The agent task's size, as the template's task definition gives it."""

    vcpu: float
    memory_gb: float


# ------------------------------------------------------------------------------------------------ validation


def problems(value: Any) -> dict[str, str]:
    """What is wrong with a `warmWindows` value, by field (`warmWindows[0].start`); empty when nothing."""
    if not isinstance(value, list):
        return {"warmWindows": "must be a list of windows such as {days: [mon], start: 08:00, end: 18:00}"}
    if len(value) > MAX_WINDOWS:
        return {"warmWindows": f"at most {MAX_WINDOWS} windows"}
    found: dict[str, str] = {}
    for index, window in enumerate(value):
        found.update(_window_problems(window, f"warmWindows[{index}]"))
    return found


def _window_problems(window: Any, where: str) -> dict[str, str]:
    if not isinstance(window, dict):
        return {where: "must be an object with days, start and end"}
    found: dict[str, str] = {}
    for key in sorted(set(window) - _KEYS):
        found[f"{where}.{key}"] = "is not part of a window (days, start, end)"
    for key in sorted(_KEYS - set(window)):
        found[f"{where}.{key}"] = "is required"
    days = window.get("days")
    if "days" in window and not _days_valid(days):
        found[f"{where}.days"] = "must list 1 to 7 different weekdays from " + ", ".join(DAYS)
    start, end = window.get("start"), window.get("end")
    if "start" in window and not (isinstance(start, str) and _TIME.fullmatch(start)):
        found[f"{where}.start"] = "must be a time of day HH:MM from 00:00 to 23:59"
    if "end" in window and not (isinstance(end, str) and (_TIME.fullmatch(end) or end == "24:00")):
        found[f"{where}.end"] = "must be a time of day HH:MM from 00:01 to 24:00"
    elif "end" in window and start == end:
        found[f"{where}.end"] = "must differ from start (an end before the start runs past midnight)"
    return found


def _days_valid(days: Any) -> bool:
    return (
        isinstance(days, list)
        and 0 < len(days) <= len(DAYS)
        and all(isinstance(day, str) and day in DAYS for day in days)
        and len(set(days)) == len(days)
    )


def parse(value: Any) -> list[Window]:
    """Stored windows as Windows; [] when the value is missing or not valid (it was checked when saved)."""
    if value is None or problems(value):
        return []
    return [
        Window(
            days=tuple(sorted(DAYS.index(day) for day in item["days"])),
            start=_minute_of_day(item["start"]),
            end=_minute_of_day(item["end"]),
        )
        for item in value
    ]


def _minute_of_day(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


# ------------------------------------------------------------------------------------------------ time


def covers(windows: Sequence[Window], zone: str, now: float) -> bool:
    """True while one of the windows is open at `now`, read on the clocks of `zone`."""
    local = datetime.fromtimestamp(now, ZoneInfo(zone))
    day, minute = local.weekday(), local.hour * 60 + local.minute
    for window in windows:
        if window.end > window.start:
            if day in window.days and window.start <= minute < window.end:
                return True
            continue
        # Past midnight: the evening of a start day, or the small hours of the day after one.
        if (day in window.days and minute >= window.start) or (
            (day - 1) % 7 in window.days and minute < window.end
        ):
            return True
    return False


def open_or_opening(windows: Sequence[Window], zone: str, now: float) -> bool:
    """A window is open at `now` or opens within OPENING_SECONDS."""
    return covers(windows, zone, now) or covers(windows, zone, now + OPENING_SECONDS)


def hours_per_week(windows: Sequence[Window]) -> float:
    """Hours of the week covered by at least one window (overlapping windows are counted once)."""
    covered = bytearray(_MINUTES_PER_WEEK)
    for window in windows:
        for day in window.days:
            first = day * _MINUTES_PER_DAY + window.start
            for minute in range(first, first + window.minutes):
                covered[minute % _MINUTES_PER_WEEK] = 1
    return sum(covered) / 60


def cron_expressions(windows: Sequence[Window]) -> list[str]:
    """One EventBridge Scheduler `cron()` per window, firing at its start on its weekdays."""
    names = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
    return [
        f"cron({w.start % 60} {w.start // 60} ? * {','.join(names[day] for day in w.days)} *)"
        for w in windows
    ]


# ------------------------------------------------------------------------------------------------ cost


def monthly_cost(windows: Sequence[Window], task: TaskSize) -> dict[str, Any]:
    """What keeping the agent awake through the windows costs a month, with what the figure rests on."""
    hours = hours_per_week(windows) * WEEKS_PER_MONTH
    compute_hour = prices.fargate_spot_hour(task.vcpu, task.memory_gb)
    return {
        "hoursPerMonth": round(hours, 1),
        "dollarsPerMonth": round(hours * (compute_hour + prices.PUBLIC_IPV4_HOUR), 2),
        "dollarsPerHour": round(compute_hour + prices.PUBLIC_IPV4_HOUR, 5),
        "task": {"vcpu": task.vcpu, "memoryGb": task.memory_gb},
        "pricesAsOf": prices.PRICES_AS_OF,
        "pricesSource": prices.PRICES_SOURCE,
        "assumption": (
            f"Fargate Spot, Linux/ARM, {task.vcpu:g} vCPU and {task.memory_gb:g} GB, about "
            f"{prices.FARGATE_SPOT_DISCOUNT:.0%} below on-demand, plus its public IPv4 address; "
            "hours you chat outside the windows come on top"
        ),
    }


def task_size(cpu_units: int, memory_mib: int) -> TaskSize:
    """A task definition's Cpu (units, 1024 a vCPU) and Memory (MiB) as vCPU and GB."""
    return TaskSize(vcpu=cpu_units / 1024, memory_gb=memory_mib / 1024)


def for_user(stored: Mapping[str, Any]) -> tuple[list[Window], str]:
    """A user's windows and time zone from their stored settings."""
    zone = stored.get("timezone")
    return parse(stored.get("warmWindows")), zone if isinstance(zone, str) and zone else "UTC"
