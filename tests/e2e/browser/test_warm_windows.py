"""The settings dialog's warm windows in Chromium: the monthly cost shown as the windows are edited (the
server's figure), a refused window named, and the saved windows written as schedules."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.browser.pages import ChatPage
from tests.e2e.browser.test_web_chat import signed_in
from tests.e2e.harness import LocalStackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Contexts = Callable[..., BrowserContext]
Screenshot = Callable[[ChatPage, str], Path]


def test_the_cost_of_warm_windows_is_shown_before_saving_and_the_saved_ones_are_scheduled(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given the settings dialog of a user without windows
    tab = signed_in(contexts, shared_stack, new_user)
    page = tab.page
    page.get_by_role("button", name="Settings").click()
    cost = page.locator("#warm-windows-cost")
    expect(cost).to_contain_text("No window, no extra cost")

    # When a window is added (weekdays 08:00-18:00 by default)
    page.get_by_role("button", name="Add a window").click()

    # Then its monthly cost appears before anything is saved: 217 hours on the default task
    expect(cost).to_contain_text(re.compile(r"about 217 hours a month: about \$\d+\.\d\d a month"))
    expect(cost).to_contain_text("1 vCPU, 2 GB on Fargate Spot")
    monday_to_friday = page.locator("#warm-windows-cost").inner_text()

    # When Saturday is ticked too, the figure follows (10 more hours a week)
    page.get_by_label("Window 1: Sat").check()
    expect(cost).to_contain_text("about 261 hours a month")
    assert page.locator("#warm-windows-cost").inner_text() != monday_to_friday

    # When the end is set to the start, the server's reason is shown instead of a figure
    page.get_by_label("Window 1: until").fill("08:00")
    expect(cost).to_contain_text("Window 1: end must differ from start")
    expect(page.get_by_label("Window 1: until")).to_have_attribute("aria-invalid", "true")

    # When a valid end is set and the settings are saved in Paris
    page.get_by_label("Window 1: until").fill("12:30")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#settings-saved")).to_contain_text("Saved")
    screenshot(tab, "05-warm-windows")

    # Then the window is stored, and its start is a schedule on Paris clocks
    token = shared_stack.login(*new_user)
    settings = shared_stack.api("GET", "/api/settings", token).json()
    assert settings["warmWindows"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri", "sat"], "start": "08:00", "end": "12:30"}
    ]
    listed = httpx.get(f"{shared_stack.endpoints['schedulerUrl']}/", timeout=30).json()["schedules"]
    user_id = next(s["name"] for s in listed if s["timezone"] == "Europe/Paris")
    assert user_id.startswith("window-") and user_id.endswith("-0")

    # And after a reload the dialog shows it again
    page.keyboard.press("Escape")
    page.reload()
    tab.expect_chat()
    page.get_by_role("button", name="Settings").click()
    expect(page.get_by_label("Window 1: from")).to_have_value("08:00")
    expect(page.get_by_label("Window 1: until")).to_have_value("12:30")
    expect(page.get_by_label("Window 1: Sun")).not_to_be_checked()
    assert tab.errors_except(r"status of 400") == []  # the refused window's cost
