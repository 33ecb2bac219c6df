"""The local stack's EventBridge Scheduler against what AWS documents.

Source: "Schedule types on EventBridge Scheduler", docs.aws.amazon.com/scheduler/latest/UserGuide/
schedule-types.html (cron's six fields and wildcards, day-of-week 1-7 as SUN-SAT, one of the day fields
`?`; rate from StartDate or at once; at() once in its zone; daylight saving time: "When the time shifts
forward in Spring, your schedule invocation gets skipped if the cron expression falls on a non-existent
date and time. When the time shifts back in the Fall, your schedule runs only once"), and the
CreateSchedule reference (StartDate/EndDate ignored by one-time schedules, ActionAfterCompletion DELETE,
State DISABLED). The examples below are the cron examples of that guide.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from local.aws import EmbeddedAws
from local.resolve import Resolver
from local.scheduler import (
    ExpressionError,
    Schedule,
    SchedulerClock,
    SchedulerEmulation,
    control_app,
    parse_cron,
)
from tests.local.conftest import crash, started

CREATED = datetime(2027, 1, 1, tzinfo=UTC)
WAKE_ARN = "arn:aws:lambda:us-east-1:123456789012:function:local-WakeFunction"


def _schedule(expression: str, zone: str = "UTC", **extra: Any) -> Schedule:
    return Schedule(
        name="s",
        group="g",
        expression=expression,
        timezone=zone,
        state=extra.pop("state", "ENABLED"),
        target={"Arn": WAKE_ARN},
        created=extra.pop("created", CREATED),
        **extra,
    )


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _fires(schedule: Schedule, after: str, until: str) -> list[str]:
    times = schedule.fire_times(_utc(after), _utc(until))
    return [t.strftime("%Y-%m-%d %a %H:%M") for t in times]


# --- Expressions, as documented ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "after", "until", "expected"),
    [
        # "Run at 10:00 am (UTC+0) every day"
        (
            "0 10 * * ? *",
            "2027-01-04 09:00",
            "2027-01-06 09:00",
            ["2027-01-04 Mon 10:00", "2027-01-05 Tue 10:00"],
        ),
        # "Run at 12:15 pm (UTC+0) every day"
        ("15 12 * * ? *", "2027-01-04 12:00", "2027-01-04 13:00", ["2027-01-04 Mon 12:15"]),
        # "Run at 6:00 pm (UTC+0) every Monday through Friday"
        (
            "0 18 ? * MON-FRI *",
            "2027-01-08 00:00",
            "2027-01-12 00:00",
            ["2027-01-08 Fri 18:00", "2027-01-11 Mon 18:00"],
        ),
        # "Run at 8:00 am (UTC+0) every first day of the month"
        (
            "0 8 1 * ? *",
            "2027-01-15 00:00",
            "2027-03-15 00:00",
            ["2027-02-01 Mon 08:00", "2027-03-01 Mon 08:00"],
        ),
        # "Run every 15 minutes"
        (
            "0/15 * * * ? *",
            "2027-01-04 10:00",
            "2027-01-04 11:00",
            ["2027-01-04 Mon 10:15", "2027-01-04 Mon 10:30", "2027-01-04 Mon 10:45", "2027-01-04 Mon 11:00"],
        ),
        # "Run every 10 minutes Monday through Friday" (weekend: nothing)
        ("0/10 * ? * MON-FRI *", "2027-01-09 00:00", "2027-01-10 23:59", []),
        # "Run every 5 minutes between 8:00 am and 5:55 pm (UTC+0)" (a list and a range)
        ("0/5 8-17 ? * MON-FRI *", "2027-01-04 17:50", "2027-01-04 18:10", ["2027-01-04 Mon 17:55"]),
        # 1/10: every tenth minute from the first
        (
            "1/10 9 * * ? *",
            "2027-01-04 09:00",
            "2027-01-04 09:30",
            ["2027-01-04 Mon 09:01", "2027-01-04 Mon 09:11", "2027-01-04 Mon 09:21"],
        ),
        # Day names, WED and SAT among them (not AWS's W and L forms)
        (
            "0 8 ? * WED,SAT *",
            "2027-01-04 00:00",
            "2027-01-10 00:00",
            ["2027-01-06 Wed 08:00", "2027-01-09 Sat 08:00"],
        ),
        # Day-of-week numbers: 1 is Sunday, 7 Saturday
        (
            "0 9 ? * 1,7 *",
            "2027-01-04 00:00",
            "2027-01-11 00:00",
            ["2027-01-09 Sat 09:00", "2027-01-10 Sun 09:00"],
        ),
        # Months by name and lists of minutes; the year field bounds it
        (
            "5,35 14 ? JAN,MAR SUN 2027",
            "2027-01-01 00:00",
            "2027-01-04 00:00",
            ["2027-01-03 Sun 14:05", "2027-01-03 Sun 14:35"],
        ),
        ("0 12 * * ? 2028", "2027-12-31 00:00", "2028-01-02 00:00", ["2028-01-01 Sat 12:00"]),
    ],
)
def test_cron_fires_when_the_guide_says(fields: str, after: str, until: str, expected: list[str]) -> None:
    # Given / When a cron schedule in UTC is asked when it fires in a span
    # Then it is the times the guide describes for that expression
    assert _fires(_schedule(f"cron({fields})"), after, until) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ("0 10 * * *", "six fields"),
        ("0 10 * * MON *", "exactly one of day-of-month and day-of-week must be ?"),
        ("0 10 ? * ? *", "exactly one of day-of-month and day-of-week must be ?"),
        ("0 10 L * ? *", "L, W or #"),
        ("0 10 3W * ? *", "L, W or #"),
        ("0 10 ? * 3#2 *", "L, W or #"),
        ("0 10 ? * 6L *", "L, W or #"),
        ("0 10 LW * ? *", "L, W or #"),
        ("0 24 * * ? *", "hours 24 is outside 0-23"),
        ("60 1 * * ? *", "minutes 60 is outside 0-59"),
        ("0 1 * FOO ? *", "not a value of that field"),
        ("? 1 * * ? *", "? is allowed only in day-of-month or day-of-week, not minutes"),
        ("0 5-1 * * ? *", "runs backwards"),
    ],
)
def test_a_cron_the_local_scheduler_cannot_evaluate_is_refused_clearly(fields: str, message: str) -> None:
    # Given / When an expression AWS would refuse, or one using L, W or #
    with pytest.raises(ExpressionError) as refused:
        parse_cron(fields)

    # Then the message says what is wrong and, for L/W/#, what to write instead
    assert message in str(refused.value)


def test_cron_is_evaluated_on_the_clocks_of_its_zone_across_dst_in_paris() -> None:
    # Given office hours starting at 08:00 in Paris
    schedule = _schedule("cron(0 8 ? * MON-FRI *)", "Europe/Paris")

    # Then 08:00 Paris is 07:00 UTC before the clocks go forward (2027-03-28) and 06:00 UTC after
    assert _fires(schedule, "2027-03-26 00:00", "2027-03-30 00:00") == [
        "2027-03-26 Fri 07:00",
        "2027-03-29 Mon 06:00",
    ]
    # And 07:00 UTC again after they go back (2027-10-31)
    assert _fires(schedule, "2027-10-29 00:00", "2027-11-02 00:00") == [
        "2027-10-29 Fri 06:00",
        "2027-11-01 Mon 07:00",
    ]


def test_a_cron_time_the_clocks_skip_does_not_run_and_one_they_repeat_runs_once() -> None:
    # Given a schedule at 02:30 every day in Paris
    schedule = _schedule("cron(30 2 * * ? *)", "Europe/Paris")

    # Then on 2027-03-28 (02:00 → 03:00) it is skipped; the days around it run
    assert _fires(schedule, "2027-03-26 12:00", "2027-03-29 12:00") == [
        "2027-03-27 Sat 01:30",
        "2027-03-29 Mon 00:30",
    ]
    # And on 2027-10-31 (03:00 → 02:00, 02:30 happens twice) it runs once, at the first 02:30
    assert _fires(schedule, "2027-10-30 12:00", "2027-11-01 12:00") == [
        "2027-10-31 Sun 00:30",
        "2027-11-01 Mon 01:30",
    ]


def test_rate_runs_from_its_start_date_or_at_once() -> None:
    # Given a rate schedule without a StartDate, created at midnight
    schedule = _schedule("rate(20 minutes)")

    # Then it runs at its creation and every 20 minutes
    assert _fires(schedule, "2026-12-31 23:59", "2027-01-01 00:45") == [
        "2027-01-01 Fri 00:00",
        "2027-01-01 Fri 00:20",
        "2027-01-01 Fri 00:40",
    ]
    # And with a StartDate, from it (a day is 24 hours, whatever the zone's clocks do)
    daily = _schedule("rate(1 day)", "Europe/Paris", start=_utc("2027-03-27 10:00"))
    assert _fires(daily, "2027-03-27 00:00", "2027-03-29 23:00") == [
        "2027-03-27 Sat 10:00",
        "2027-03-28 Sun 10:00",
        "2027-03-29 Mon 10:00",
    ]


def test_at_runs_once_at_that_time_of_its_zone_whatever_its_start_and_end() -> None:
    # Given a one-time schedule at 09:00 Paris time, with a StartDate after it and an EndDate before it
    schedule = _schedule(
        "at(2027-01-15T09:00:00)",
        "Europe/Paris",
        start=_utc("2027-02-01 00:00"),
        end=_utc("2027-01-02 00:00"),
    )

    # Then it runs once, at 08:00 UTC (one-time schedules ignore StartDate and EndDate)
    assert _fires(schedule, "2027-01-14 00:00", "2027-01-16 00:00") == ["2027-01-15 Fri 08:00"]
    assert _fires(schedule, "2027-01-15 08:00", "2027-01-16 00:00") == []


def test_start_and_end_dates_bound_a_recurring_schedule_and_disabled_fires_nothing() -> None:
    # Given a daily 10:00 schedule from the 5th to the 7th (10:00 included)
    bounded = _schedule("cron(0 10 * * ? *)", start=_utc("2027-01-05 00:00"), end=_utc("2027-01-07 10:00"))

    # Then it runs on the 5th, 6th and 7th only
    assert _fires(bounded, "2027-01-03 00:00", "2027-01-10 00:00") == [
        "2027-01-05 Tue 10:00",
        "2027-01-06 Wed 10:00",
        "2027-01-07 Thu 10:00",
    ]
    # And disabled, never
    assert (
        _fires(_schedule("cron(0 10 * * ? *)", state="DISABLED"), "2027-01-03 00:00", "2027-01-10 00:00")
        == []
    )


def test_nothing_fires_for_a_time_before_the_schedule_existed() -> None:
    # Given a daily schedule created at 10:00:30
    schedule = _schedule("cron(0 10 * * ? *)", created=_utc("2027-01-04 10:00:30"))

    # Then the 10:00 of that day is not run; the next day's is
    assert _fires(schedule, "2027-01-04 09:00", "2027-01-05 11:00") == ["2027-01-05 Tue 10:00"]


# --- Firing schedules kept in moto -------------------------------------------------------------------


@pytest.fixture
def scheduler() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("scheduler", region_name="us-east-1")
        client.create_schedule_group(Name="local-wake")
        yield client


class Targets:
    """Records what the Scheduler invoked; `failing` makes the target raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.failing = False

    async def invoke(self, arn: str, event: Any) -> Any:
        self.calls.append((arn, event))
        if self.failing:
            raise RuntimeError("FunctionError: the target failed")
        return {"ok": True}


def _create(scheduler: Any, name: str, expression: str, zone: str = "UTC", **extra: Any) -> None:
    scheduler.create_schedule(
        Name=name,
        GroupName="local-wake",
        ScheduleExpression=expression,
        ScheduleExpressionTimezone=zone,
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": WAKE_ARN,
            "RoleArn": "arn:aws:iam::123456789012:role/r",
            "Input": json.dumps({"n": name}),
        },
        **extra,
    )


def _clock_at(moment: datetime) -> SchedulerClock:
    return SchedulerClock(wall=lambda: moment)


async def test_due_schedules_invoke_their_target_with_their_input_once(scheduler: Any) -> None:
    # Given a schedule every minute, created now, and the Scheduler's clock now
    targets = Targets()
    now = datetime.now(UTC)
    emulation = SchedulerEmulation(scheduler, targets.invoke, clock=_clock_at(now))
    _create(scheduler, "every-minute", "cron(* * * * ? *)")

    # When nothing has become due, nothing runs
    assert await emulation.tick() == []

    # When the clock moves two minutes on
    fired = await emulation.advance(120)

    # Then it ran twice with its Input as the event, and moving on by nothing runs nothing again
    assert [(f.schedule, f.ok) for f in fired] == [("every-minute", True)] * 2
    assert targets.calls == [(WAKE_ARN, {"n": "every-minute"})] * 2
    assert await emulation.advance(0) == []


async def test_a_window_start_fires_at_its_local_time_after_the_zone_changes(scheduler: Any) -> None:
    # Given a window start at 08:00 Paris time on weekdays, and the clock at Friday 06:30 UTC
    targets = Targets()
    emulation = SchedulerEmulation(scheduler, targets.invoke, clock=_clock_at(_utc("2027-01-15 06:30")))
    _create(scheduler, "window", "cron(0 8 ? * MON-FRI *)", "Europe/Paris")

    # When it reaches 07:00 UTC (08:00 in Paris), it runs
    assert [f.at for f in await emulation.advance(30 * 60)] == [_utc("2027-01-15 07:00")]

    # And when the schedule moves to Tokyo, it runs at 08:00 there (23:00 UTC), not at Paris's next 08:00
    scheduler.update_schedule(
        Name="window",
        GroupName="local-wake",
        ScheduleExpression="cron(0 8 ? * MON-FRI *)",
        ScheduleExpressionTimezone="Asia/Tokyo",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": WAKE_ARN, "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": "{}"},
    )
    fired = await emulation.advance(4 * 24 * 3600)  # to Tuesday 07:00 UTC
    assert [f.at for f in fired] == [_utc("2027-01-17 23:00"), _utc("2027-01-18 23:00")]


async def test_disabled_schedules_do_not_fire_and_one_time_ones_are_deleted_after_their_run(
    scheduler: Any,
) -> None:
    # Given a disabled schedule, a one-time one to delete after completion and one to keep
    targets = Targets()
    emulation = SchedulerEmulation(scheduler, targets.invoke, clock=_clock_at(_utc("2027-01-15 08:00")))
    _create(scheduler, "off", "cron(* * * * ? *)", State="DISABLED")
    _create(scheduler, "once-delete", "at(2027-01-15T08:05:00)", ActionAfterCompletion="DELETE")
    _create(scheduler, "once-keep", "at(2027-01-15T08:05:00)", ActionAfterCompletion="NONE")

    # When ten minutes pass
    fired = await emulation.advance(600)

    # Then each one-time schedule ran once; the DELETE one is gone, the others stay
    assert sorted(f.schedule for f in fired) == ["once-delete", "once-keep"]
    names = sorted(s["Name"] for s in scheduler.list_schedules(GroupName="local-wake")["Schedules"])
    assert names == ["off", "once-keep"]
    assert await emulation.advance(600) == []


async def test_a_failing_target_is_reported_and_the_next_run_still_happens(scheduler: Any) -> None:
    # Given a target that fails
    targets, reported = Targets(), []
    targets.failing = True
    emulation = SchedulerEmulation(
        scheduler, targets.invoke, clock=_clock_at(_utc("2027-01-15 08:00")), on_failure=reported.append
    )
    _create(scheduler, "hourly", "cron(0 * * * ? *)")

    # When its time comes
    fired = await emulation.advance(3600)

    # Then the failure is told, naming the schedule and the target
    assert [f.ok for f in fired] == [False]
    assert "local-wake/hourly" in reported[0] and WAKE_ARN in reported[0]

    # And the next hour it runs again
    targets.failing = False
    assert [f.ok for f in await emulation.advance(3600)] == [True]


async def test_an_unreadable_expression_is_reported_and_the_others_still_fire(scheduler: Any) -> None:
    # Given one schedule using L and one ordinary one
    targets, reported = Targets(), []
    emulation = SchedulerEmulation(
        scheduler, targets.invoke, clock=_clock_at(_utc("2027-01-15 08:00")), on_failure=reported.append
    )
    _create(scheduler, "last-day", "cron(0 9 L * ? *)")
    _create(scheduler, "nine", "cron(0 9 * * ? *)")

    # When 09:00 passes
    fired = await emulation.advance(3600)

    # Then the ordinary one ran and the other is reported with what to write instead
    assert [f.schedule for f in fired] == ["nine"]
    assert any("last-day" in message and "L, W or #" in message for message in reported)


async def test_the_control_endpoint_moves_the_clock_and_shows_the_next_runs(scheduler: Any) -> None:
    # Given the Scheduler's control app over a schedule at 09:00 UTC
    targets = Targets()
    emulation = SchedulerEmulation(scheduler, targets.invoke, clock=_clock_at(_utc("2027-01-15 08:00")))
    _create(scheduler, "nine", "cron(0 9 * * ? *)")
    transport = httpx.ASGITransport(app=control_app(emulation))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as web:
        # When it is looked at, then moved an hour on
        overview = (await web.get("/")).json()
        moved = (await web.post("/advance", json={"seconds": 3600})).json()

        # Then it showed the next run, and moving the clock fired it
        assert overview["schedules"][0]["next"] == "2027-01-15T09:00:00Z"
        assert moved["now"] == "2027-01-15T09:00:00Z" and [f["schedule"] for f in moved["fired"]] == ["nine"]
        assert (await web.post("/advance", json={"seconds": -5})).status_code == 400
        assert (await web.post("/advance", json={})).status_code == 400


def test_the_template_schedule_group_exists_and_schedules_survive_a_crash(
    template: dict[str, Any], tmp_path: Path, fresh_moto: None
) -> None:
    # Given the local AWS with the template's resources, and a user's schedule in the wake group
    first = started(tmp_path, template)
    group = Resolver(template, "local").physical_id("WakeScheduleGroup")
    assert group == "local-wake"
    scheduler = boto3.client(
        "scheduler",
        endpoint_url=first.url,
        region_name="us-east-1",
        aws_access_key_id="l",
        aws_secret_access_key="l",
    )
    scheduler.create_schedule(
        Name="window-u-0",
        GroupName=group,
        ScheduleExpression="cron(0 8 ? * MON *)",
        ScheduleExpressionTimezone="Europe/Paris",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": WAKE_ARN, "RoleArn": "arn:aws:iam::123456789012:role/r", "Input": "{}"},
    )

    # When the stack is killed and starts again on the same state
    crash(first)
    second = EmbeddedAws(tmp_path, 0)
    second.start()
    try:
        second.create_resources(Resolver(template, "local"), template)
        again = boto3.client(
            "scheduler",
            endpoint_url=second.url,
            region_name="us-east-1",
            aws_access_key_id="l",
            aws_secret_access_key="l",
        )

        # Then the schedule is there, as written
        kept = again.get_schedule(Name="window-u-0", GroupName=group)
        assert kept["ScheduleExpressionTimezone"] == "Europe/Paris"
        assert kept["ScheduleExpression"] == "cron(0 8 ? * MON *)"
    finally:
        second.stop()


def test_fire_times_are_in_order_across_days_and_schedules() -> None:
    # Given a schedule at two times a day
    schedule = _schedule("cron(0 7,19 * * ? *)", "America/New_York")

    # Then its times come in order, on New York's clocks
    times = schedule.fire_times(_utc("2027-01-04 00:00"), _utc("2027-01-05 23:59"))
    assert times == sorted(times)
    assert [t.strftime("%d %H:%M") for t in times] == ["04 12:00", "05 00:00", "05 12:00"]
    assert all(t - times[0] < timedelta(days=2) for t in times)
