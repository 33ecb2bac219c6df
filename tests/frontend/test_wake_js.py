"""The web chat's wake on intent (frontend/assets/app/wake.js) under Node: when `warm` frames go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.frontend import node_driver

DRIVER = Path(__file__).with_name("wake_driver.mjs")


def drive(scenario: str) -> Any:
    """Run one scenario of the Node driver and return what it printed."""
    return node_driver.drive(DRIVER, scenario)


def test_opening_the_page_on_an_idle_agent_sends_one_warm_and_typing_is_debounced() -> None:
    result = drive("opening")
    # Nothing before the setting is known; one frame once it is; ten keystrokes in a second add nothing;
    # after the debounce the next keystroke sends one more
    assert (result["beforeSettings"], result["afterOpen"]) == (0, 1)
    assert result["afterTyping"] == 1 and result["afterDebounce"] == 2
    assert result["frames"] == ["warm", "warm"]


def test_nothing_is_sent_while_the_agent_starts_or_runs() -> None:
    assert drive("busy") == {"whileUp": 0, "afterIdle": 1}


def test_a_user_who_turned_it_off_sends_nothing_and_the_servers_refusal_stops_it_too() -> None:
    assert drive("off") == {"offSent": 0, "sentBeforeRefusal": 1, "afterRefusal": 1}


def test_offline_nothing_is_sent_and_after_a_reconnect_only_once_the_status_is_known() -> None:
    # (the first frame is the page-open wake, before the connection dropped)
    assert drive("offline") == {"offline": 1, "beforeStatus": 1, "afterStatus": 2}


def test_the_settings_dialog_states_the_cost_of_a_wake_nobody_follows_up() -> None:
    result = drive("cost")
    assert "after 3 min" in result["text"] and "$0.0008 per such wake on Fargate Spot" in result["text"]
    assert "$0.0022" in result["text"] and "about $0.02 a month" in result["text"]
    assert "list prices of 2025-06" in result["text"] and result["none"] == ""
