"""Warm windows: the setting and its checks, the cost shown before saving, the schedules written per window
start, the wake they trigger, and the watchdog keeping the agent awake inside a window only."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from serverless_openclaw import prices, routing, wake, warm_windows, watchdog
from serverless_openclaw.aws.clients import client as aws_client
from serverless_openclaw.aws.scheduler import WakeSchedules, schedule_prefix
from serverless_openclaw.config import WakeSchedulesConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.settings import InvalidSettings, validate
from serverless_openclaw.wake_schedules import Wanted
from tests.fakes import Clock, FakeLauncher, FakeSchedules
from tests.unit.conftest_agents import OTHER, USER, running
from tests.unit.test_http_api import ALICE, Api

MINUTE = 60.0
OFFICE_HOURS = [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "18:00"}]


def _at(text: str, zone: str = "UTC") -> float:
    """Epoch seconds of a wall-clock time in a zone, e.g. _at("2027-01-15 09:30", "Europe/Paris")."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def _keep_alive(cp: ControlPlane, clock: Clock, task: str, seconds: float, user: str = USER) -> None:
    """Let time pass with the bridge heartbeating and nobody writing (idle, alive)."""
    passed = 0.0
    while passed < seconds:
        clock.advance(min(MINUTE, seconds - passed))
        passed += MINUTE
        cp.task_state.heartbeat(user, task, False, cp.clock())


@pytest.fixture
def http_api(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> Api:
    """The HTTP API function on the test control plane (its schedule writer is FakeSchedules)."""
    module = importlib.import_module("functions.http_api.app")
    monkeypatch.setattr(module, "plane", cp)
    return Api(module, lambda_context)


# --- The setting ------------------------------------------------------------------------------------


def test_windows_in_the_documented_shape_are_accepted_as_sent() -> None:
    # Given office hours, a window past midnight and one to the end of the day
    windows = [
        *OFFICE_HOURS,
        {"days": ["fri", "sat"], "start": "22:00", "end": "02:00"},
        {"days": ["sun"], "start": "20:00", "end": "24:00"},
    ]

    # When they are validated
    # Then they are kept exactly as sent
    assert validate({"warmWindows": windows}) == {"warmWindows": windows}
    assert validate({"warmWindows": []}) == {"warmWindows": []}


@pytest.mark.parametrize(
    ("value", "field", "reason"),
    [
        ("08:00-18:00", "warmWindows", "must be a list"),
        ([OFFICE_HOURS[0]] * 8, "warmWindows", "at most 7"),
        (["mon 8-18"], "warmWindows[0]", "must be an object"),
        ([{"days": ["monday"], "start": "08:00", "end": "18:00"}], "warmWindows[0].days", "weekdays"),
        ([{"days": [], "start": "08:00", "end": "18:00"}], "warmWindows[0].days", "1 to 7"),
        ([{"days": ["mon", "mon"], "start": "08:00", "end": "18:00"}], "warmWindows[0].days", "different"),
        ([{"days": ["mon"], "start": "8:00", "end": "18:00"}], "warmWindows[0].start", "HH:MM"),
        ([{"days": ["mon"], "start": "24:00", "end": "18:00"}], "warmWindows[0].start", "23:59"),
        ([{"days": ["mon"], "start": "08:00", "end": "18:60"}], "warmWindows[0].end", "HH:MM"),
        ([{"days": ["mon"], "start": "08:00", "end": 18}], "warmWindows[0].end", "HH:MM"),
        ([{"days": ["mon"], "start": "08:00", "end": "08:00"}], "warmWindows[0].end", "must differ"),
        ([{"days": ["mon"], "start": "08:00"}], "warmWindows[0].end", "is required"),
        ([{**OFFICE_HOURS[0], "zone": "UTC"}], "warmWindows[0].zone", "is not part of a window"),
    ],
)
def test_a_bad_window_is_refused_naming_the_field_and_the_rule(value: Any, field: str, reason: str) -> None:
    # Given / When a malformed warmWindows value is validated
    with pytest.raises(InvalidSettings) as refused:
        validate({"warmWindows": value})

    # Then the refusal names the field and says what is allowed
    assert field in refused.value.problems and reason in refused.value.problems[field]


def test_every_bad_field_of_every_window_is_named_at_once() -> None:
    # Given two windows, each wrong in its own way, and a bad time zone alongside
    value = [
        {"days": ["mon"], "start": "25:00", "end": "18:00"},
        {"days": "tue", "start": "08:00", "end": "x"},
    ]

    # When they are validated
    with pytest.raises(InvalidSettings) as refused:
        validate({"warmWindows": value, "timezone": "Mars/Olympus"})

    # Then the user learns about all of them in one go
    assert sorted(refused.value.problems) == [
        "timezone",
        "warmWindows[0].start",
        "warmWindows[1].days",
        "warmWindows[1].end",
    ]


def test_bad_windows_are_refused_with_400_and_nothing_is_written(
    http_api: Api, cp: ControlPlane, schedules: FakeSchedules
) -> None:
    # Given Alice has office hours saved
    assert http_api.call("PUT", "/api/settings", body={"warmWindows": OFFICE_HOURS})[0] == 200

    # When she sends a bad window together with a good time zone
    bad = [{"days": ["mon"], "start": "08:00", "end": "08:00"}]
    status, body = http_api.call("PUT", "/api/settings", body={"warmWindows": bad, "timezone": "Asia/Tokyo"})

    # Then nothing changes: not the settings, not the schedules
    assert status == 400 and body["error"] == "invalid_settings"
    assert set(body["fields"]) == {"warmWindows[0].end"}
    _, now = http_api.call("GET", "/api/settings")
    assert now["warmWindows"] == OFFICE_HOURS and now["timezone"] == "UTC"
    assert schedules.kept[(ALICE, "window")] == [Wanted("cron(0 8 ? * MON,TUE,WED,THU,FRI *)", "UTC")]


# --- Time -------------------------------------------------------------------------------------------


def test_a_window_covers_its_hours_on_its_days_in_its_zone() -> None:
    # Given office hours in Paris
    windows = warm_windows.parse(OFFICE_HOURS)

    # Then Friday 09:30 in Paris is inside; 07:59, 18:00 and Saturday are outside
    assert warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 09:30", "Europe/Paris"))
    assert warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 08:00", "Europe/Paris"))
    assert not warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 07:59", "Europe/Paris"))
    assert not warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 18:00", "Europe/Paris"))
    assert not warm_windows.covers(windows, "Europe/Paris", _at("2027-01-16 09:30", "Europe/Paris"))
    # And 09:30 UTC on that Friday is 10:30 in Paris: inside; 17:30 UTC is 18:30 there: outside
    assert warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 09:30"))
    assert not warm_windows.covers(windows, "Europe/Paris", _at("2027-01-15 17:30"))


def test_a_window_past_midnight_ends_on_the_next_day() -> None:
    # Given Friday and Saturday nights 22:00-02:00
    windows = warm_windows.parse([{"days": ["fri", "sat"], "start": "22:00", "end": "02:00"}])

    # Then Saturday 01:00 and Sunday 01:00 are inside; Friday 01:00 (Thursday night) and Sunday 02:00 are not
    assert warm_windows.covers(windows, "UTC", _at("2027-01-16 01:00"))
    assert warm_windows.covers(windows, "UTC", _at("2027-01-17 01:00"))
    assert warm_windows.covers(windows, "UTC", _at("2027-01-15 23:00"))
    assert not warm_windows.covers(windows, "UTC", _at("2027-01-15 01:00"))
    assert not warm_windows.covers(windows, "UTC", _at("2027-01-17 02:00"))


def test_a_window_follows_the_wall_clock_across_a_dst_change() -> None:
    # Given office hours in Paris, and the Monday after the clocks went forward (2027-03-28)
    windows = warm_windows.parse(OFFICE_HOURS)

    # Then 08:00 Paris time is 07:00 UTC in winter and 06:00 UTC in summer
    assert warm_windows.covers(windows, "Europe/Paris", _at("2027-03-22 07:00"))
    assert not warm_windows.covers(windows, "Europe/Paris", _at("2027-03-22 06:30"))
    assert warm_windows.covers(windows, "Europe/Paris", _at("2027-03-29 06:30"))


def test_each_window_becomes_one_cron_at_its_start_on_its_days() -> None:
    # Given two windows
    windows = warm_windows.parse([*OFFICE_HOURS, {"days": ["sun", "sat"], "start": "21:45", "end": "01:00"}])

    # When their schedule expressions are made
    # Then each fires at its start, on its weekdays (AWS's six fields, ? for day-of-month)
    assert warm_windows.cron_expressions(windows) == [
        "cron(0 8 ? * MON,TUE,WED,THU,FRI *)",
        "cron(45 21 ? * SAT,SUN *)",
    ]


# --- Cost -------------------------------------------------------------------------------------------


def test_the_monthly_cost_is_the_covered_hours_at_the_spot_price_of_the_tasks_size() -> None:
    # Given office hours (50 h a week) and a 1 vCPU / 2 GB task
    windows = warm_windows.parse(OFFICE_HOURS)
    task = warm_windows.task_size(1024, 2048)

    # When the cost is computed
    cost = warm_windows.monthly_cost(windows, task)

    # Then it is those hours of an average month at the table's Spot price, plus the public address
    hours = 50 * 365.25 / 7 / 12
    hourly = (prices.FARGATE_ARM_VCPU_HOUR + 2 * prices.FARGATE_ARM_GB_HOUR) * (
        1 - prices.FARGATE_SPOT_DISCOUNT
    )
    assert cost["hoursPerMonth"] == round(hours, 1) == 217.4
    assert cost["dollarsPerMonth"] == round(hours * (hourly + prices.PUBLIC_IPV4_HOUR), 2)
    assert cost["task"] == {"vcpu": 1.0, "memoryGb": 2.0}
    assert cost["pricesAsOf"] == prices.PRICES_AS_OF and "us-east-1" in cost["pricesSource"]


def test_overlapping_windows_are_paid_once_and_no_windows_cost_nothing() -> None:
    # Given office hours and an overlapping Monday 12:00-20:00 (2 more hours)
    task = warm_windows.task_size(1024, 2048)
    overlap = warm_windows.parse([*OFFICE_HOURS, {"days": ["mon"], "start": "12:00", "end": "20:00"}])

    # Then 52 hours a week are counted, not 58; and no window costs nothing
    assert warm_windows.hours_per_week(overlap) == 52
    assert warm_windows.monthly_cost([], task)["dollarsPerMonth"] == 0


def test_the_cost_route_prices_windows_before_saving_and_names_bad_fields(
    http_api: Api, schedules: FakeSchedules
) -> None:
    # Given / When the web chat asks what office hours would cost
    status, body = http_api.call(
        "POST", "/api/settings/warm-windows/cost", body={"warmWindows": OFFICE_HOURS}
    )

    # Then it gets the figure for the template's default task (1 vCPU, 2 GB), and nothing is saved
    assert status == 200 and body["hoursPerMonth"] == 217.4 and body["dollarsPerMonth"] > 0
    assert body["task"] == {"vcpu": 1.0, "memoryGb": 2.0}
    assert http_api.call("GET", "/api/settings")[1]["warmWindows"] == [] and schedules.kept == {}

    # And a bad window gets a 400 naming the field
    status, body = http_api.call(
        "POST", "/api/settings/warm-windows/cost", body={"warmWindows": [{"days": ["mon"], "start": "x"}]}
    )
    assert status == 400 and set(body["fields"]) == {"warmWindows[0].start", "warmWindows[0].end"}


# --- Schedules --------------------------------------------------------------------------------------


def test_saving_windows_writes_one_schedule_per_window_in_the_users_zone(
    http_api: Api, schedules: FakeSchedules
) -> None:
    # Given / When Alice saves office hours and a weekend window, in Paris
    windows = [*OFFICE_HOURS, {"days": ["sat"], "start": "10:00", "end": "12:00"}]
    status, _ = http_api.call(
        "PUT", "/api/settings", body={"warmWindows": windows, "timezone": "Europe/Paris"}
    )

    # Then she has one schedule per window start, evaluated on Paris clocks
    assert status == 200
    assert schedules.kept == {
        (ALICE, "window"): [
            Wanted("cron(0 8 ? * MON,TUE,WED,THU,FRI *)", "Europe/Paris"),
            Wanted("cron(0 10 ? * SAT *)", "Europe/Paris"),
        ]
    }


def test_changing_the_time_zone_moves_the_schedules_and_removing_windows_removes_them(
    http_api: Api, schedules: FakeSchedules
) -> None:
    # Given Alice's office hours in UTC
    http_api.call("PUT", "/api/settings", body={"warmWindows": OFFICE_HOURS})

    # When she moves to Tokyo
    assert http_api.call("PUT", "/api/settings", body={"timezone": "Asia/Tokyo"})[0] == 200

    # Then the same windows are scheduled on Tokyo clocks
    assert schedules.kept[(ALICE, "window")] == [Wanted("cron(0 8 ? * MON,TUE,WED,THU,FRI *)", "Asia/Tokyo")]

    # And when she removes her windows, no schedule is left
    assert http_api.call("PUT", "/api/settings", body={"warmWindows": []})[0] == 200
    assert schedules.kept == {}


def test_a_schedule_that_cannot_be_written_is_told_and_saving_again_mends_it(
    http_api: Api, schedules: FakeSchedules
) -> None:
    # Given the Scheduler API fails
    schedules.failing = True

    # When Alice saves her windows
    status, body = http_api.call("PUT", "/api/settings", body={"warmWindows": OFFICE_HOURS})

    # Then she is told to save again (503), without the internal error, and the settings are kept
    assert status == 503 and body["error"] == "schedules_not_written" and "Save again" in body["message"]
    assert "Throttling" not in json.dumps(body)
    assert http_api.call("GET", "/api/settings")[1]["warmWindows"] == OFFICE_HOURS

    # And once the API is back, saving again writes the schedule
    schedules.failing = False
    assert http_api.call("PUT", "/api/settings", body={"warmWindows": OFFICE_HOURS})[0] == 200
    assert (ALICE, "window") in schedules.kept


def test_settings_that_do_not_move_a_window_write_no_schedule(
    http_api: Api, schedules: FakeSchedules
) -> None:
    # Given schedules that would fail if written
    schedules.failing = True

    # When Alice changes only her idle timeout
    status, _ = http_api.call("PUT", "/api/settings", body={"idleTimeoutMinutes": 30})

    # Then the Scheduler API is not touched
    assert status == 200


@pytest.fixture
def scheduler_group(aws: dict[str, str]) -> Iterator[WakeSchedules]:
    """The real adapter against moto's Scheduler, with the stack's group created."""
    config = WakeSchedulesConfig.from_env()
    aws_client("scheduler").create_schedule_group(Name=config.group)
    yield WakeSchedules(config)


def _described(group: str) -> dict[str, dict[str, Any]]:
    scheduler = aws_client("scheduler")
    return {
        item["Name"]: scheduler.get_schedule(Name=item["Name"], GroupName=group)
        for item in scheduler.list_schedules(GroupName=group)["Schedules"]
    }


def test_the_schedule_writer_replaces_a_users_schedules_and_leaves_others_alone(
    scheduler_group: WakeSchedules,
) -> None:
    # Given Alice has two window schedules and Bob one
    group = scheduler_group.config.group
    bob = "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"
    scheduler_group.replace(
        ALICE, "window", [Wanted("cron(0 8 ? * MON *)", "UTC"), Wanted("cron(0 9 ? * TUE *)", "UTC")]
    )
    scheduler_group.replace(bob, "window", [Wanted("cron(0 7 ? * SUN *)", "UTC")])

    # When Alice keeps one window, moved to Paris
    names = scheduler_group.replace(ALICE, "window", [Wanted("cron(30 8 ? * MON *)", "Europe/Paris")])

    # Then she has exactly that schedule, invoking the wake function with her id and the reason
    schedules = _described(group)
    assert names == [f"window-{ALICE}-0"]
    assert sorted(schedules) == sorted([f"window-{ALICE}-0", f"window-{bob}-0"])
    mine = schedules[f"window-{ALICE}-0"]
    assert mine["ScheduleExpression"] == "cron(30 8 ? * MON *)"
    assert mine["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert mine["State"] == "ENABLED" and mine["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert mine["Target"]["Arn"] == scheduler_group.config.target_arn
    assert mine["Target"]["RoleArn"] == scheduler_group.config.role_arn
    assert json.loads(mine["Target"]["Input"]) == {"userId": ALICE, "reason": "window"}

    # And with no windows she has none; Bob keeps his
    assert scheduler_group.replace(ALICE, "window", []) == []
    assert sorted(_described(group)) == [f"window-{bob}-0"]


def test_a_user_id_that_cannot_name_a_schedule_is_hashed_into_a_valid_name() -> None:
    # Given a user id with characters schedule names do not allow
    prefix = schedule_prefix("telegram:12345/x", "window")

    # Then the prefix is made of allowed characters only, and fits the 64-character limit with room
    assert prefix.startswith("window-") and len(prefix) <= 60
    assert all(ch.isalnum() or ch in "-_." for ch in prefix)


# --- Wake -------------------------------------------------------------------------------------------


@pytest.fixture
def wake_app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.wake.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


def test_a_window_start_starts_the_agent_as_a_message_would(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher, wake_app: ModuleType, lambda_context: Any
) -> None:
    # Given Alice's office hours, and Friday 08:00 UTC (the fake clock)
    cp.settings.put(ALICE, {"warmWindows": OFFICE_HOURS}, clock())
    assert datetime.fromtimestamp(clock(), UTC).strftime("%a %H:%M") == "Fri 08:00"

    # When her schedule fires
    result = wake_app.lambda_handler({"userId": ALICE, "reason": "window"}, lambda_context)

    # Then her agent starts on Spot, once, and a second wake finds it on its way
    assert result["result"] == "started" and result["status"] == "starting"
    assert launcher.launched == [(ALICE, Capacity.SPOT)]
    assert cp.task_state.get(ALICE).status is Status.STARTING
    again = wake_app.lambda_handler({"userId": ALICE, "reason": "window"}, lambda_context)
    assert again["result"] == "already" and len(launcher.launched) == 1


def test_a_full_spot_pool_starts_the_window_on_demand(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given Spot has no capacity
    launcher.spot_full = True
    cp.settings.put(ALICE, {"warmWindows": OFFICE_HOURS}, clock())

    # When the window opens
    result = wake.wake(cp, wake.WakeEvent(ALICE, wake.WINDOW))

    # Then the agent starts on on-demand capacity
    assert result.result == "started"
    assert cp.task_state.get(ALICE).capacity is Capacity.ON_DEMAND


def test_a_stale_window_schedule_starts_nothing(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given Alice's only window is on Sundays (a schedule for another one was left behind)
    cp.settings.put(ALICE, {"warmWindows": [{"days": ["sun"], "start": "08:00", "end": "18:00"}]}, clock())

    # When a window wake arrives on Friday 08:00
    result = wake.wake(cp, wake.WakeEvent(ALICE, wake.WINDOW))

    # Then no agent is started
    assert result.result == "not_due" and launcher.launched == []


def test_a_wake_a_little_before_the_window_opens_is_honoured(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given a window opening at 08:03 and the clock at 08:00
    cp.settings.put(ALICE, {"warmWindows": [{"days": ["fri"], "start": "08:03", "end": "09:00"}]}, clock())

    # When the wake arrives
    # Then it is genuine (the scheduler's clock may be ahead of ours)
    assert wake.wake(cp, wake.WakeEvent(ALICE, wake.WINDOW)).result == "started"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"userId": ALICE, "reason": "party"}, "reason must be one of window"),
        ({"reason": "window"}, "userId must be"),
        ({"userId": "a b", "reason": "window"}, "userId must be"),
        (["window"], "must be an object"),
    ],
)
def test_a_malformed_wake_event_is_refused_without_starting_anything(
    event: Any, reason: str, wake_app: ModuleType, launcher: FakeLauncher, lambda_context: Any
) -> None:
    # Given / When the wake function receives a malformed event
    result = wake_app.lambda_handler(event, lambda_context)

    # Then it says what is wrong, raises nothing (retrying would not mend it), and starts nothing
    assert result["result"] == "refused" and reason in result["error"]
    assert launcher.launched == []


# --- The watchdog inside and outside a window --------------------------------------------------------


def test_inside_a_window_an_idle_agent_is_kept(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given Alice's office hours and her agent running since Friday 08:00, quiet for an hour
    cp.settings.put(USER, {"warmWindows": OFFICE_HOURS}, clock())
    task = running(cp)
    _keep_alive(cp, clock, task, 60 * MINUTE)

    # When the watchdog runs at 09:00 (idle timeout 15 minutes)
    actions = watchdog.sweep(cp)

    # Then the agent is kept
    assert actions == [] and launcher.stopped == []
    assert cp.task_state.get(USER).status is Status.RUNNING


def test_outside_a_window_the_idle_timeout_applies_again(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given a window 08:00-09:00 and an agent quiet since 08:00
    cp.settings.put(USER, {"warmWindows": [{"days": ["fri"], "start": "08:00", "end": "09:00"}]}, clock())
    task = running(cp)
    _keep_alive(cp, clock, task, 59 * MINUTE)
    assert watchdog.sweep(cp) == []

    # When the window has closed (09:01)
    _keep_alive(cp, clock, task, 2 * MINUTE)
    actions = watchdog.sweep(cp)

    # Then the quiet agent is stopped for idleness
    assert [(a.user_id, a.action) for a in actions] == [(USER, "stop_idle")]
    assert launcher.stopped == [(task, "idle timeout")]


def test_an_idle_agent_is_not_stopped_minutes_before_a_window_opens(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given two agents quiet since 08:00 (past the 15-minute timeout): one user's window opens at 08:45,
    # the other's at 08:56
    cp.settings.put(USER, {"warmWindows": [{"days": ["fri"], "start": "08:45", "end": "10:00"}]}, clock())
    cp.settings.put(OTHER, {"warmWindows": [{"days": ["fri"], "start": "08:56", "end": "10:00"}]}, clock())
    mine, other = running(cp), running(cp, OTHER)
    passed = 0.0
    while passed < 41 * MINUTE:
        clock.advance(MINUTE)
        passed += MINUTE
        cp.task_state.heartbeat(USER, mine, False, cp.clock())
        cp.task_state.heartbeat(OTHER, other, False, cp.clock())

    # When the watchdog runs at 08:41
    actions = watchdog.sweep(cp)

    # Then the agent whose window opens in 4 minutes is kept (its start would otherwise find it Stopping
    # and could not start another); the one whose window is a quarter of an hour away is stopped
    assert [(a.user_id, a.action) for a in actions] == [(OTHER, "stop_idle")]
    assert launcher.stopped == [(other, "idle timeout")]


def test_changing_the_time_zone_moves_the_window_the_watchdog_honours(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given office hours in UTC and an agent quiet since 08:00 UTC Friday, now 10:00 UTC (inside)
    cp.settings.put(USER, {"warmWindows": OFFICE_HOURS, "timezone": "UTC"}, clock())
    task = running(cp)
    _keep_alive(cp, clock, task, 120 * MINUTE)
    assert watchdog.sweep(cp) == []

    # When Alice says she lives in Los Angeles (10:00 UTC is 02:00 there: outside office hours)
    cp.settings.put(USER, {"timezone": "America/Los_Angeles"}, clock())
    actions = watchdog.sweep(cp)

    # Then the same quiet agent is stopped for idleness
    assert [(a.user_id, a.action) for a in actions] == [(USER, "stop_idle")]
    assert launcher.stopped == [(task, "idle timeout")]


def test_an_agent_woken_by_an_open_chat_before_its_window_is_kept_once_the_window_opens(
    cp: ControlPlane, clock: Clock, launcher: FakeLauncher
) -> None:
    # Given Alice opened the chat at 07:58 (woken without a message, warmSince) and her window opens at 08:00
    cp.settings.put(USER, {"warmWindows": OFFICE_HOURS}, clock())
    clock.advance(-2 * MINUTE)
    assert routing.wake_on_intent(cp, USER).wake == "started"
    state = cp.task_state.get(USER)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock(), set_={"startAttempts": 0})
    _keep_alive(cp, clock, state.task_arn or "", 2 * MINUTE)

    # When the window's schedule fires and finds it running
    result = wake.wake(cp, wake.WakeEvent(USER, wake.WINDOW))

    # Then the window keeps it: the warm mark is gone, so neither the bridge nor the watchdog stops it
    # after the short warm timeout, and no second task is started
    assert result.result == "already" and len(launcher.launched) == 1
    assert cp.task_state.get(USER).warm_since is None
    _keep_alive(cp, clock, state.task_arn or "", 30 * MINUTE)
    assert watchdog.sweep(cp) == [] and launcher.stopped == []
