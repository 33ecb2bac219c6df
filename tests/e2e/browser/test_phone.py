"""The web chat on a phone (390×844) in a real Chromium against the local stack.

What a person holding a phone would notice: the page never scrolls sideways (code blocks and tables
scroll inside their message), Send and Sign out stay on screen, every control of the Settings dialog
can be pressed, the Telegram link code shows where the button was pressed, the two "stop" buttons say
what they stop, and the sign-in page says which product it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Locator, Page, expect

from tests.e2e.browser.pages import ChatPage
from tests.e2e.harness import LocalStackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Contexts = Callable[..., BrowserContext]
Screenshot = Callable[[ChatPage, str], Path]

PHONE: dict[str, object] = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP: dict[str, object] = {"viewport": {"width": 1280, "height": 860}}
PRODUCT = "Serverless OpenClaw"


def signed_in(
    contexts: Contexts, stack: LocalStackProcess, user: tuple[str, str], size: dict[str, object]
) -> ChatPage:
    tab = ChatPage.open(contexts(**size), stack.endpoints["webUrl"])
    tab.sign_in(*user)
    tab.expect_chat()
    return tab


def page_width(page: Page) -> tuple[int, int]:
    """How wide the page's content is, and how wide the screen is (CSS pixels).

    The screen's width is the emulated viewport's, not `innerWidth`: a mobile browser zooms out to show a
    page wider than the screen, and `innerWidth` then grows with the page.
    """
    scroll = page.evaluate("Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    viewport = page.viewport_size
    assert viewport is not None
    return int(scroll), min(viewport["width"], int(page.evaluate("window.innerWidth")))


def assert_no_sideways_scroll(page: Page) -> None:
    scroll, inner = page_width(page)
    assert scroll <= inner, f"the page is {scroll} px wide on a {inner} px screen"


def assert_on_screen(page: Page, control: Locator) -> None:
    """The control lies wholly inside the screen's width and can be pressed (nothing covers it)."""
    box = control.bounding_box()
    inner = page_width(page)[1]
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= inner, f"{control} at {box}"
    control.click(trial=True, timeout=5_000)  # Playwright's actionability: visible, stable, not covered


def is_at_its_centre(control: Locator) -> bool:
    """Whether the element under the control's centre is the control (or inside it): nothing covers it."""
    return bool(
        control.evaluate(
            """el => {
                const r = el.getBoundingClientRect();
                const top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
                return top !== null && (top === el || el.contains(top));
            }"""
        )
    )


def scrolls_inside(element: Locator) -> bool:
    """Whether the element is wider inside than outside and can be scrolled sideways by itself."""
    return bool(
        element.evaluate(
            """el => {
                if (el.scrollWidth <= el.clientWidth) return false;
                el.scrollLeft = 120;
                const moved = el.scrollLeft > 0;
                el.scrollLeft = 0;
                return moved;
            }"""
        )
    )


def assert_within(inner: Locator, outer: Locator) -> None:
    a, b = inner.bounding_box(), outer.bounding_box()
    assert a is not None and b is not None
    assert a["x"] >= b["x"] - 0.5 and a["x"] + a["width"] <= b["x"] + b["width"] + 0.5, (
        f"{a} sticks out of {b}"
    )


def test_the_sign_in_page_names_the_product_and_fits_a_phone(
    shared_stack: LocalStackProcess, contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given / When the web chat is opened on a phone, signed out
    tab = ChatPage.open(contexts(**PHONE), shared_stack.endpoints["webUrl"])
    page = tab.page

    # Then the tab and the page name the product, above the sign-in form
    expect(page).to_have_title(re.compile(PRODUCT))
    expect(page.get_by_role("heading", name=PRODUCT, level=1)).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in to your agent")).to_be_visible()
    screenshot(tab, "phone-01-sign-in")

    # And the form fits the screen, its button can be pressed
    assert_no_sideways_scroll(page)
    assert_on_screen(page, page.get_by_role("button", name="Sign in"))
    assert tab.console_errors == []


def test_on_a_phone_wide_replies_scroll_inside_their_message_and_each_stop_button_says_what_it_stops(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given a phone, and a first message (it wakes the agent) with a word longer than the screen
    tab = signed_in(contexts, shared_stack, new_user, PHONE)
    page = tab.page
    stop_agent = page.get_by_role("button", name="Stop the agent")
    stop_reply = page.get_by_role("button", name="Stop this reply")
    tab.send("wide markdown demo " + "unbroken" * 40)

    # Then while the agent starts only stopping the agent applies, and is named so
    expect(page.locator("#starting-banner")).to_be_visible(timeout=15_000)
    expect(stop_agent).to_be_visible()
    expect(stop_reply).to_be_hidden()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_have_count(0)

    # When the reply has a long code line, a wide table and a long link
    reply = tab.wait_reply("Wider than a phone", timeout=300_000)  # a cold start, on a busy machine
    screenshot(tab, "phone-02-wide-reply")

    # Then the page does not scroll sideways; Send and Sign out are on screen and can be pressed
    assert_no_sideways_scroll(page)
    assert_on_screen(page, page.get_by_role("button", name="Send"))
    assert_on_screen(page, page.get_by_role("button", name="Sign out"))
    assert_on_screen(page, page.get_by_role("button", name="Settings"))

    # And the code block and the table scroll inside the reply, the link and the long word wrap
    code, table = reply.locator("pre"), reply.locator(".table-scroll")
    assert scrolls_inside(code) and scrolls_inside(table)
    for part in (code, table, reply.get_by_role("link")):
        assert_within(part, reply)
    assert_within(reply, page.locator("#messages"))
    assert_within(tab.messages("user").last, page.locator("#messages"))
    expect(table.locator("td").last).to_have_text("value-of-column-10")  # cells keep their words whole
    assert table.locator("td").last.evaluate(
        "el => el.getClientRects().length === 1 && el.scrollWidth <= el.clientWidth"
    )

    # When a long reply streams on the running agent
    tab.send("slowly count to 400")
    streaming = page.locator("#message-list article.message.assistant.streaming")
    expect(streaming).to_contain_text(re.compile(r"\b5\b"), timeout=60_000)

    # Then "Stop this reply" is offered beside Send, both on screen, and it stops only the reply
    assert_no_sideways_scroll(page)
    assert_on_screen(page, stop_reply)
    assert_on_screen(page, page.get_by_role("button", name="Send"))
    screenshot(tab, "phone-03-streaming")
    stop_reply.click()
    expect(page.locator("#message-list article.message.assistant.stopped")).to_contain_text(
        "Stopped", timeout=30_000
    )
    expect(stop_reply).to_be_hidden()
    expect(page.locator("#agent-status")).to_have_text("Agent: Running")

    # And the same conversation fits a desktop screen too
    page.set_viewport_size({"width": 1280, "height": 860})
    assert_no_sideways_scroll(page)
    assert tab.console_errors == []


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_every_settings_control_can_be_pressed_and_the_link_code_shows_where_it_was_asked_for(
    shared_stack: LocalStackProcess,
    new_user: tuple[str, str],
    contexts: Contexts,
    screenshot: Screenshot,
    size: dict[str, object],
) -> None:
    # Given the Settings dialog, opened and loaded
    tab = signed_in(contexts, shared_stack, new_user, size)
    page = tab.page
    page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog.get_by_label("Time zone")).to_have_value("UTC")

    # Then it has a section per subject: the model, the agent's own behaviour, Telegram
    model, agent = dialog.get_by_role("group", name="Model"), dialog.get_by_role("group", name="Your agent")
    expect(model.get_by_label("Provider")).to_be_attached()
    expect(model.get_by_label("Model id")).to_be_attached()
    expect(model.get_by_label("Time zone")).to_have_count(0)
    expect(agent.get_by_label("Stop the agent after this many idle minutes")).to_be_attached()
    expect(agent.get_by_label("Time zone")).to_be_attached()
    expect(dialog.get_by_role("group", name="Telegram")).to_be_attached()

    # And Close and Save can be pressed as the dialog opens, without scrolling
    close, save = dialog.get_by_role("button", name="Close"), dialog.get_by_role("button", name="Save")
    for control in (close, save):
        expect(control).to_be_in_viewport(ratio=1)
        assert is_at_its_centre(control), f"{control} is covered"
    assert_no_sideways_scroll(page)

    # And every control in it can be reached and pressed (nothing covers any of them)
    controls = dialog.locator("button:visible, input:visible, select:visible, textarea:visible")
    assert controls.count() >= 7
    for i in range(controls.count()):
        controls.nth(i).click(trial=True, timeout=5_000)

    # When a Telegram link code is asked for
    dialog.get_by_role("button", name="Get a link code").click()

    # Then the code is on screen right away, uncovered, with the controls still reachable
    command = dialog.locator("#telegram-command")
    expect(command).to_have_text(re.compile(r"^/link [A-Z2-9]{8}$"))
    expect(command).to_be_in_viewport(ratio=1)
    assert is_at_its_centre(command)
    expect(close).to_be_in_viewport(ratio=1)
    assert is_at_its_centre(close)
    screenshot(tab, f"settings-link-code-{'phone' if size is PHONE else 'desktop'}")

    # And Close closes the dialog
    close.click()
    expect(dialog).to_be_hidden()
    assert tab.console_errors == []
