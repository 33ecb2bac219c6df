"""The EventBridge Scheduler part of the local stack: moto keeps the schedules (its `scheduler` API), and
this module fires them as AWS would.

Each schedule's expression is evaluated in its `ScheduleExpressionTimezone`, as AWS documents in "Schedule
types on EventBridge Scheduler" (docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html):

- `cron(minutes hours day-of-month month day-of-week year)`: the six fields with `*`, `?`, `,`, `-` and
  `/`; day-of-week 1-7 is SUN-SAT; one of the two day fields must be `?`. `L`, `W` and `#` are refused
  with a message naming them (the stack never writes them).
- `rate(value unit)`: from `StartDate`, or from the schedule's creation when it has none, every interval.
- `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall-clock time of the zone.
- Daylight saving time: a cron time that does not exist on the day the clocks go forward is skipped; one
  that happens twice when they go back runs once (the first).
- `State` DISABLED fires nothing; `StartDate`/`EndDate` bound recurring schedules (a one-time schedule
  ignores them); `ActionAfterCompletion` DELETE deletes a schedule after its last invocation.
- The target's `Input` is the event the Lambda function receives (an empty object without one).

AWS invokes within the minute a schedule names; here a schedule fires at the first tick (every second)
after that moment. A failed invocation is reported, not retried (AWS retries by the target's
RetryPolicy). The clock can be moved forward (`POST /_local/scheduler/advance`), so a test fires the next
window start without waiting for it; every time at or before the new now fires, in order.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TICK_SECONDS = 1.0
MAX_FIRES_PER_TICK = 1000
"""A `rate(1 minute)` across a clock moved forward by weeks stops here (and says so)."""


class ExpressionError(ValueError):
    """A schedule expression the local Scheduler cannot evaluate; the message says what to change."""


# ---------------------------------------------------------------------------------------------- cron

_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


_SPECIAL = re.compile(r"L|LW|\d+W|(?:\d+|[A-Z]{3})L|.*#.*")
"""AWS's last (`L`, `6L`), weekday (`15W`, `LW`) and nth (`6#3`) forms; not a name such as WED."""

_FIELDS = (
    _Field("minutes", 0, 59),
    _Field("hours", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 1, 7, _WEEKDAYS),
    _Field("year", 1970, 2199),
)


@dataclass(frozen=True)
class Cron:
    """A parsed AWS cron expression: the values each field allows (None: `?`, any)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None
    """1 = Sunday … 7 = Saturday, as AWS numbers them."""
    years: frozenset[int]

    def matches_day(self, day: date) -> bool:
        """Whether the expression fires on this (local) date at all."""
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.days_of_month is not None:
            return day.day in self.days_of_month
        sunday_first = day.isoweekday() % 7 + 1  # isoweekday: Monday 1 … Sunday 7
        return self.days_of_week is not None and sunday_first in self.days_of_week


def parse_cron(fields: str) -> Cron:
    """The six fields of `cron(...)`; ExpressionError naming the field and what is wrong."""
    parts = fields.split()
    if len(parts) != 6:
        raise ExpressionError(
            f"cron() needs six fields (minutes hours day-of-month month day-of-week year), got {len(parts)}"
        )
    if (parts[2] == "?") == (parts[4] == "?"):
        raise ExpressionError("cron(): exactly one of day-of-month and day-of-week must be ?")
    values = [None if text == "?" else _values(text, spec) for text, spec in zip(parts, _FIELDS, strict=True)]
    for spec, value in zip(_FIELDS, values, strict=True):
        if value is None and spec.name not in ("day-of-month", "day-of-week"):
            raise ExpressionError(
                f"cron(): ? is allowed only in day-of-month or day-of-week, not {spec.name}"
            )
    minutes, hours, dom, months, dow, years = values
    if minutes is None or hours is None or months is None or years is None:
        raise ExpressionError("cron(): ? is allowed only in day-of-month or day-of-week")
    return Cron(minutes, hours, dom, months, dow, years)


def _values(text: str, spec: _Field) -> frozenset[int]:
    found: set[int] = set()
    for item in text.split(","):
        if _SPECIAL.fullmatch(item.strip().upper()):
            raise ExpressionError(
                f"cron(): {spec.name} {item!r} uses L, W or #, which the local Scheduler does not evaluate; "
                "write the days out (e.g. 1-5 or MON-FRI)"
            )
        found.update(_item_values(item, spec))
    return frozenset(found)


def _item_values(item: str, spec: _Field) -> range:
    base, _, step_text = item.partition("/")
    step = _number(step_text, spec, is_step=True) if step_text else 1
    if base == "*":
        first, last = spec.low, spec.high
    elif "-" in base:
        first_text, _, last_text = base.partition("-")
        first, last = _number(first_text, spec), _number(last_text, spec)
        if first > last:
            raise ExpressionError(f"cron(): {spec.name} range {base!r} runs backwards")
    else:
        first = _number(base, spec)
        last = spec.high if step_text else first  # AWS: 1/10 is every tenth minute from the first
    return range(first, last + 1, step)


def _number(text: str, spec: _Field, *, is_step: bool = False) -> int:
    upper = text.strip().upper()
    if not is_step and upper in spec.names:
        return spec.names[upper]
    if not upper.isdigit():
        raise ExpressionError(f"cron(): {spec.name} has {text!r}, which is not a value of that field")
    value = int(upper)
    if is_step:
        if value < 1:
            raise ExpressionError(f"cron(): {spec.name} step must be at least 1")
        return value
    if not spec.low <= value <= spec.high:
        raise ExpressionError(f"cron(): {spec.name} {value} is outside {spec.low}-{spec.high}")
    return value


def cron_times(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> Iterator[datetime]:
    """The UTC instants in (after, until] at which the expression fires on the clocks of `zone`."""
    day = after.astimezone(zone).date()
    last_day = until.astimezone(zone).date()
    while day <= last_day:
        if cron.matches_day(day):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    instant = _existing_instant(day, hour, minute, zone)
                    if instant is not None and after < instant <= until:
                        yield instant
        day += timedelta(days=1)


def _existing_instant(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a wall-clock time; None when the clocks skip it (spring forward).

    A time that happens twice (fall back) is its first occurrence only (fold=0): it runs once.
    """
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


# ---------------------------------------------------------------------------------------------- schedules

_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_AT = re.compile(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)")
_CRON = re.compile(r"cron\((.*)\)")


@dataclass(frozen=True)
class Schedule:
    """What the local Scheduler needs of one schedule (GetSchedule's answer)."""

    name: str
    group: str
    expression: str
    timezone: str
    state: str
    target: dict[str, Any]
    created: datetime
    start: datetime | None = None
    end: datetime | None = None
    after_completion: str = "NONE"

    @classmethod
    def from_api(cls, answer: dict[str, Any]) -> Schedule:
        """From a GetSchedule response."""
        return cls(
            name=str(answer["Name"]),
            group=str(answer.get("GroupName") or "default"),
            expression=str(answer["ScheduleExpression"]).strip(),
            timezone=str(answer.get("ScheduleExpressionTimezone") or "UTC"),
            state=str(answer.get("State") or "ENABLED"),
            target=dict(answer.get("Target") or {}),
            created=_utc(answer.get("CreationDate")) or datetime.now(UTC),
            start=_utc(answer.get("StartDate")),
            end=_utc(answer.get("EndDate")),
            after_completion=str(answer.get("ActionAfterCompletion") or "NONE"),
        )

    @property
    def one_time(self) -> bool:
        """An `at()` schedule."""
        return self.expression.startswith("at(")

    def fire_times(self, after: datetime, until: datetime) -> list[datetime]:
        """When the schedule fires in (after, until], oldest first; ExpressionError if it cannot be read."""
        if self.state != "ENABLED":
            return []
        zone = _zone(self.timezone)
        # Nothing fires before the schedule existed; StartDate and EndDate bound recurring schedules only.
        low = max(after, self.created - timedelta(milliseconds=1))
        high = until
        if not self.one_time:
            if self.start is not None:
                low = max(low, self.start - timedelta(microseconds=1))
            if self.end is not None:
                high = min(high, self.end)
        if high <= low:
            return []
        return list(self._times(zone, low, high))

    def _times(self, zone: ZoneInfo, low: datetime, high: datetime) -> Iterator[datetime]:
        found = _CRON.fullmatch(self.expression)
        if found:
            yield from cron_times(parse_cron(found.group(1)), zone, low, high)
            return
        found = _AT.fullmatch(self.expression)
        if found:
            instant = datetime.fromisoformat(found.group(1)).replace(tzinfo=zone).astimezone(UTC)
            if low < instant <= high:
                yield instant
            return
        found = _RATE.fullmatch(self.expression)
        if found:
            value, unit = int(found.group(1)), found.group(2).rstrip("s")
            if value < 1:
                raise ExpressionError(f"{self.expression}: the rate must be at least 1")
            every = timedelta(**{f"{unit}s": value})
            first = self.start or self.created
            # The first run at or after `low`, then every interval (a day is 24 hours on the clock).
            skipped = max(0, (low - first) // every)
            instant = first + skipped * every
            while instant <= high:
                if instant > low:
                    yield instant
                instant += every
            return
        raise ExpressionError(
            f"{self.expression!r} is not at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(six fields)"
        )

    def completed(self, now: datetime) -> bool:
        """No invocation is left: a one-time schedule whose time passed, or a recurring one past its end."""
        if self.one_time:
            found = _AT.fullmatch(self.expression)
            if not found:
                return False
            at = datetime.fromisoformat(found.group(1)).replace(tzinfo=_zone(self.timezone))
            return at.astimezone(UTC) <= now
        return self.end is not None and self.end <= now


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"ScheduleExpressionTimezone {name!r} is not an IANA time zone") from None


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return None


# ---------------------------------------------------------------------------------------------- firing


@dataclass
class SchedulerClock:
    """The Scheduler's idea of now: the wall clock plus however far it was moved forward."""

    offset: float = 0.0
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.wall() + timedelta(seconds=self.offset)


@dataclass(frozen=True)
class Firing:
    """One invocation: which schedule, for which moment, and how it went."""

    schedule: str
    at: datetime
    target: str
    ok: bool
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """For the control endpoint."""
        return {
            "schedule": self.schedule,
            "at": self.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "target": self.target,
            "ok": self.ok,
            "detail": self.detail,
        }


Invoke = Callable[[str, Any], Awaitable[Any]]
"""Runs a Lambda target (by ARN) with an event; raises when the function failed."""


class SchedulerEmulation:
    """Reads the schedules moto keeps and fires the ones due, each at most once."""

    def __init__(
        self,
        scheduler: Any,
        invoke: Invoke,
        *,
        clock: SchedulerClock | None = None,
        on_failure: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.scheduler = scheduler
        """A boto3 `scheduler` client of the local AWS."""
        self.invoke = invoke
        self.clock = clock or SchedulerClock()
        self.on_failure = on_failure
        self.checked_until = self.clock()
        self.fired: list[Firing] = []
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Fire due schedules every TICK_SECONDS until cancelled."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except Exception as exc:  # the local AWS went away (stopping) or answered nonsense: next tick
                self.on_failure(f"the local Scheduler could not read the schedules: {exc}")

    async def advance(self, seconds: float) -> list[Firing]:
        """Move the clock forward and fire everything due up to the new now; what fired."""
        if seconds < 0:
            raise ValueError("the Scheduler's clock only moves forward")
        self.clock.offset += seconds
        return await self.tick()

    async def tick(self) -> list[Firing]:
        """Fire every schedule due since the last tick, in time order; what fired."""
        async with self._lock:
            now = self.clock()
            schedules = await asyncio.to_thread(self._schedules)
            due: list[tuple[datetime, Schedule]] = []
            for schedule in schedules:
                try:
                    due.extend((at, schedule) for at in schedule.fire_times(self.checked_until, now))
                except ExpressionError as exc:
                    self.on_failure(f"schedule {schedule.group}/{schedule.name}: {exc}")
            due.sort(key=lambda pair: (pair[0], pair[1].name))
            if len(due) > MAX_FIRES_PER_TICK:
                self.on_failure(
                    f"{len(due)} invocations were due at once; only the first {MAX_FIRES_PER_TICK} ran"
                )
                due = due[:MAX_FIRES_PER_TICK]
            fired = [await self._fire(schedule, at) for at, schedule in due]
            for schedule in schedules:
                if schedule.after_completion == "DELETE" and schedule.completed(now):
                    await asyncio.to_thread(self._delete, schedule)
            self.checked_until = now
            self.fired.extend(fired)
            return fired

    def _schedules(self) -> list[Schedule]:
        found = []
        for page in self.scheduler.get_paginator("list_schedules").paginate():
            for item in page.get("Schedules", []):
                answer = self.scheduler.get_schedule(Name=item["Name"], GroupName=item.get("GroupName"))
                found.append(Schedule.from_api(answer))
        return found

    def _delete(self, schedule: Schedule) -> None:
        try:
            self.scheduler.delete_schedule(Name=schedule.name, GroupName=schedule.group)
        except self.scheduler.exceptions.ResourceNotFoundException:
            return  # deleted meanwhile by whoever owns it

    async def _fire(self, schedule: Schedule, at: datetime) -> Firing:
        target = str(schedule.target.get("Arn", ""))
        raw = schedule.target.get("Input")
        try:
            event = json.loads(raw) if raw else {}
        except ValueError:
            event = raw  # AWS passes text that is not JSON as it is
        try:
            await self.invoke(target, event)
        except Exception as exc:
            message = f"schedule {schedule.group}/{schedule.name} at {at:%H:%M}: {target} failed: {exc}"
            self.on_failure(message)
            return Firing(schedule.name, at, target, ok=False, detail=str(exc))
        return Firing(schedule.name, at, target, ok=True)

    async def next_times(self, horizon: timedelta = timedelta(days=8)) -> list[dict[str, Any]]:
        """Every schedule and its next run within the horizon (for people looking at the local stack)."""
        now = self.clock()
        listed = []
        for schedule in await asyncio.to_thread(self._schedules):
            try:
                upcoming = schedule.fire_times(now, now + horizon)[:1]
                detail = ""
            except ExpressionError as exc:
                upcoming, detail = [], str(exc)
            listed.append(
                {
                    "name": schedule.name,
                    "group": schedule.group,
                    "expression": schedule.expression,
                    "timezone": schedule.timezone,
                    "state": schedule.state,
                    "next": upcoming[0].strftime("%Y-%m-%dT%H:%M:%SZ") if upcoming else None,
                    "error": detail,
                }
            )
        return listed


def control_app(emulation: SchedulerEmulation) -> Starlette:
    """`/_local/scheduler`: GET the clock and the schedules; POST `/advance` {"seconds": n} to move the
    clock forward and fire what became due (an e2e test's way to reach a window start at once)."""

    async def overview(_: Request) -> JSONResponse:
        return JSONResponse(
            {
                "now": emulation.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
                "offsetSeconds": emulation.clock.offset,
                "schedules": await emulation.next_times(),
            }
        )

    async def advance(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            seconds = float(body["seconds"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"seconds": <how far to move the clock forward>}'}, 400)
        if not 0 <= seconds <= 366 * 86400:
            return JSONResponse({"error": "seconds must be from 0 to a year"}, 400)
        fired = await emulation.advance(seconds)
        return JSONResponse(
            {"now": emulation.clock().strftime("%Y-%m-%dT%H:%M:%SZ"), "fired": [f.as_json() for f in fired]}
        )

    return Starlette(routes=[Route("/", overview), Route("/advance", advance, methods=["POST"])])
