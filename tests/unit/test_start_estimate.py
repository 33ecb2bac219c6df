"""Start ETAs from the user's own recent starts: computed per phase, kept per user in TaskState, never
going backwards while a start runs, and rows without a history (or with a broken one) still read."""

from __future__ import annotations

import dataclasses
from typing import Any

from serverless_openclaw import lifecycle, routing, start_estimate
from serverless_openclaw.aws.clients import client
from serverless_openclaw.config import LifecycleConfig
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.store import codec
from serverless_openclaw.store.task_state import user_key

USER = "user-a"
CFG = LifecycleConfig(start_eta_seconds=45)
STARTS = [
    {"provisioning": 10.0, "restoring": 2.0, "booting": 20.0},
    {"provisioning": 30.0, "restoring": 4.0, "booting": 12.0},
    {"provisioning": 12.0, "restoring": 3.0, "booting": 16.0},
]


def test_without_history_the_stack_default_is_split_over_the_phases() -> None:
    # Given a user who never started an agent
    expected = start_estimate.estimate((), 45)

    # Then a whole start is expected to take the stack's default, and it is not called "usual"
    assert round(expected.total) == 45 and expected.from_history is False
    assert round(expected.remaining("provisioning", 0)) == 45


def test_with_history_each_phase_is_its_median_over_the_users_recent_starts() -> None:
    # Given three recent starts, one with a slow machine
    expected = start_estimate.estimate(STARTS, 45)

    # Then each phase takes its median (the slow one does not drag the ETA), the total is their sum; these
    # starts (recorded before pulls were reported) count their pull in provisioning, none in pulling
    assert dict(expected.seconds) == {"provisioning": 12.0, "pulling": 0.0, "restoring": 3.0, "booting": 16.0}
    assert expected.total == 31.0 and expected.from_history is True
    # And the seconds left in a phase count only what is left of it, plus every later phase
    assert expected.remaining("restoring", 1.0) == 2.0 + 16.0


def test_the_eta_shown_during_a_start_never_goes_up() -> None:
    # Given a user with a history, and a start whose provisioning is twice as slow as usual
    state = TaskState(USER, Status.STARTING, started_at=1000.0, recent_starts=tuple(STARTS))
    entered = {25: "restoring", 30: "booting"}
    etas = []

    # When the status is asked every second, the bridge entering its phases late
    for second in range(0, 60):
        now = 1000.0 + second
        if second in entered:
            state = dataclasses.replace(state, start_phase=entered[second], phase_at=now)
        etas.append(lifecycle.client_status(state, now, CFG)[2])

    # Then the ETA starts at the user's usual 31 s and never goes up, whatever the phases did
    assert etas[0] == 31
    assert all(later <= earlier for earlier, later in zip(etas, etas[1:], strict=False)), etas
    # And the usual start is what the banner says a slow one is compared with
    assert lifecycle.start_timing(state, 1059.0, CFG) == (31, 59)


def test_only_the_last_starts_are_kept_and_an_unmeasurable_one_is_not() -> None:
    # Given five kept starts
    five = [dict(STARTS[0]) for _ in range(start_estimate.KEPT_STARTS)]

    # When one more is recorded, and one whose provisioning no clock could have measured
    kept = start_estimate.recorded(five, {"provisioning": 1.0, "restoring": 1.0, "booting": 1.0})
    refused = start_estimate.recorded(kept, {"provisioning": 9e9, "restoring": 1.0, "booting": 1.0})

    # Then the oldest goes, the newest is last, and the broken one changes nothing
    assert len(kept) == start_estimate.KEPT_STARTS and kept[-1] == {
        "provisioning": 1.0,
        "restoring": 1.0,
        "booting": 1.0,
    }
    assert refused == kept


def test_the_history_is_kept_in_the_users_task_state_row_and_read_back(cp: ControlPlane) -> None:
    # Given a user whose agent starts (a Starting row, launched)
    state = cp.task_state.touch_activity(USER, cp.clock())
    routing.start_agent(cp, state, reason="message")
    arn = cp.task_state.get(USER).task_arn
    assert arn is not None

    # When its bridge enters a phase, then becomes Running with this start's phases
    entered = cp.task_state.enter_start_phase(USER, arn, "booting", cp.clock())
    during = cp.task_state.get(USER)
    cp.task_state.settle_own(
        USER,
        arn,
        Status.RUNNING,
        cp.clock(),
        from_=(Status.STARTING,),
        set_={"recentStarts": start_estimate.recorded(STARTS, STARTS[0])},
        remove=("startPhase", "phaseAt"),
    )
    after = cp.task_state.get(USER)

    # Then getStatus said which phase the start was in, and the row now holds the user's last starts
    assert entered and during.start_phase == "booting" and during.phase_at == cp.clock()
    assert after.recent_starts == (*STARTS, STARTS[0]) and after.start_phase is None
    # And the next start's first status frame carries the ETA and the usual start from that history
    idle = cp.task_state.transition(after, Status.IDLE, cp.clock(), remove=lifecycle.LIVE_TASK_ATTRIBUTES)
    assert idle is not None
    assert routing.start_agent(cp, idle, reason="message").started
    frame = routing.status_frame(cp, USER)
    assert frame["phase"] == "provisioning" and frame["usualSeconds"] == frame["etaSeconds"] == 32


def test_a_phase_is_refused_once_the_row_names_another_task(cp: ControlPlane) -> None:
    # Given a Starting row naming another task
    state = cp.task_state.touch_activity(USER, cp.clock())
    routing.start_agent(cp, state, reason="message")

    # When a bridge of a task the row does not name says it is booting
    entered = cp.task_state.enter_start_phase(USER, "arn:aws:ecs:us-east-1:1:task/c/other", "booting", 1.0)

    # Then nothing changes
    assert not entered and cp.task_state.get(USER).start_phase is None


def test_a_row_without_history_or_with_one_of_another_shape_still_reads(cp: ControlPlane) -> None:
    # Given rows an older version wrote (no history) and one with a history this version cannot read
    broken: list[Any] = ["x", {"provisioning": "slow"}, {"provisioning": 5, "restoring": 1}, STARTS[1]]
    for user, extra in (("old", {}), ("odd", {"recentStarts": broken, "startPhase": 7})):
        item = {
            **user_key(user),
            **codec.dump({"status": "Starting", "version": 1, "startedAt": cp.clock(), **extra}),
        }
        client("dynamodb").put_item(TableName=cp.task_state.table, Item=item)

    # When their status is read
    old, odd = cp.task_state.get("old"), cp.task_state.get("odd")

    # Then the old row gets the stack default, the odd one keeps only the start it can read
    assert old.recent_starts == () and lifecycle.client_status(old, cp.clock(), cp.cfg.lifecycle)[2] == 45
    assert odd.recent_starts == (STARTS[1],) and odd.start_phase is None
    assert lifecycle.client_status(odd, cp.clock(), cp.cfg.lifecycle) == ("starting", "provisioning", 46)


def test_a_pulling_median_comes_from_the_starts_that_measured_their_pull() -> None:
    # Given an old start without a pulling phase, and two newer ones with it
    starts = [
        {"provisioning": 30.0, "restoring": 2.0, "booting": 20.0},
        {"provisioning": 5.0, "pulling": 20.0, "restoring": 4.0, "booting": 12.0},
        {"provisioning": 7.0, "pulling": 24.0, "restoring": 3.0, "booting": 16.0},
    ]

    # When the ETA is made of them
    expected = start_estimate.estimate(starts, 45)

    # Then pulling is the median of the two that have it; the others the median of all three
    assert dict(expected.seconds) == {"provisioning": 7.0, "pulling": 22.0, "restoring": 3.0, "booting": 16.0}
    # And a start in pulling is told what is left of the pull plus the phases after it
    assert expected.remaining("pulling", 2.0) == 20.0 + 3.0 + 16.0


def test_a_start_with_its_pull_is_kept_and_read_back_with_it() -> None:
    # Given a history an older version wrote (no pulling)
    old = [dict(s) for s in STARTS]

    # When a start with a pull is recorded, and the row is read back
    kept = start_estimate.recorded(
        old, {"provisioning": 4.0, "pulling": 18.04, "restoring": 2.0, "booting": 9.0}
    )
    read = start_estimate.readable_starts(kept)

    # Then both kinds of start read, the new one with its pull (rounded like the others)
    assert read == (*STARTS, {"provisioning": 4.0, "pulling": 18.0, "restoring": 2.0, "booting": 9.0})
    # And a pull no clock could have measured, or a start without a required phase, is not kept
    assert (
        start_estimate.recorded(
            kept, {"provisioning": 1.0, "pulling": -3.0, "restoring": 1.0, "booting": 1.0}
        )
        == kept
    )
    assert start_estimate.recorded(kept, {"provisioning": 1.0, "pulling": 3.0, "booting": 1.0}) == kept


def test_the_eta_never_goes_up_when_the_pull_is_reported() -> None:
    # Given a user whose starts measured their pull, and a start provisioning slowly
    starts = tuple(
        {"provisioning": 5.0, "pulling": 20.0, "restoring": 3.0, "booting": 12.0} for _ in range(3)
    )
    state = TaskState(USER, Status.STARTING, started_at=1000.0, recent_starts=starts)
    etas = []

    # When the status is asked every second; ECS reports the pull began at 8 s (the event lands at 10 s),
    # the bridge enters its phases at 31 s and 34 s
    for second in range(0, 50):
        now = 1000.0 + second
        if second == 10:
            state = dataclasses.replace(state, start_phase="pulling", phase_at=1008.0)
        if second in (31, 34):
            state = dataclasses.replace(
                state, start_phase={31: "restoring", 34: "booting"}[second], phase_at=now
            )
        etas.append(lifecycle.client_status(state, now, CFG)[2])

    # Then the ETA starts at the usual 40 s, never goes up, and names pulling while it lasts
    assert etas[0] == 40
    assert all(later <= earlier for earlier, later in zip(etas, etas[1:], strict=False)), etas
    assert lifecycle.client_status(state, 1040.0, CFG)[1] == "booting"
