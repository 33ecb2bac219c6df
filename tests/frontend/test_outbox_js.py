"""The web chat's outbox (frontend/assets/app/socket.js) under Node: frames go out in typed order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.frontend import node_driver

DRIVER = Path(__file__).with_name("outbox_driver.mjs")


def drive(scenario: str) -> Any:
    """Run one scenario of the Node driver and return what it printed."""
    return node_driver.drive(DRIVER, scenario)


def test_each_frame_names_the_unacknowledged_message_before_it_and_a_refused_one_goes_after_its_ack() -> None:
    # Given "a", "b", "c" typed back to back in one conversation and "x" in another
    result = drive("overtaken")

    # Then each frame names the unacknowledged message typed before it in its own conversation
    assert result["first"] == [
        {"id": "a", "after": None},
        {"id": "b", "after": "a"},
        {"id": "x", "after": None},
        {"id": "c", "after": "b"},
    ]
    # And "b" and "c", refused because they overtook their predecessors, wait (nothing is sent, nothing
    # is shown as failed) and go one by one, each once the message before it is acknowledged
    assert result["whileWaiting"] == 4 and result["refused"] == []
    assert result["afterAckA"] == [{"id": "b", "after": None}]
    assert result["afterAckB"] == [{"id": "c", "after": None}]
    assert result["pending"] == ["x", "c"]


def test_frames_in_flight_go_again_after_a_failed_function_and_one_that_keeps_failing_is_given_up() -> None:
    # Given a message on which the function fails every time, and one typed after it that waits for it
    result = drive("failing")

    # Then it is sent again after each of API Gateway's errors, four times, then reported not sent,
    # and the next one goes, no longer naming it
    assert result["sentAfterEachFailure"] == [3, 4, 5, 6, 7]
    assert result["last"] == [{"id": "next", "after": None}]
    assert result["reported"] == ["not_taken"] and result["pending"] == ["next"]
