"""The wait for a cold agent, as a person in the web chat lives it (real Chromium, the local stack, the
real bridge and OpenClaw): the banner's ETA and bar never go backwards nor sit on one message, the
message just sent stays in sight, and once the agent runs the reply shows it working until text comes."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.browser.pages import ChatPage
from tests.e2e.harness import LocalStackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Contexts = Callable[..., BrowserContext]
Screenshot = Callable[[ChatPage, str], Path]

# Every 100 ms, what the page shows: the banner, the agent's state, the reply's typing indicator, and where
# the last message the user sent is relative to the visible part of the message list.
SAMPLER = """
() => {
  window.__samples = [];
  const started = performance.now();
  setInterval(() => {
    const banner = document.getElementById("starting-banner");
    const list = document.getElementById("messages").getBoundingClientRect();
    const mine = [...document.querySelectorAll("#message-list article.message.user")].pop();
    const box = mine ? mine.getBoundingClientRect() : null;
    const progress = document.getElementById("starting-progress");
    window.__samples.push({
      at: (performance.now() - started) / 1000,
      banner: !banner.hidden,
      eta: document.getElementById("starting-eta").textContent,
      percent: progress.hasAttribute("value") ? progress.value : null,
      status: document.getElementById("agent-status").dataset.status,
      typing: !!document.querySelector("#message-list article.message.assistant .typing"),
      mineVisible: box !== null && box.bottom <= list.bottom + 1 && box.bottom > list.top,
    });
  }, 100);
}
"""


def seconds_left(text: str) -> int | None:
    match = re.fullmatch(r"about (\d+) s left", text)
    return int(match.group(1)) if match else None


def test_a_cold_start_counts_down_honestly_keeps_the_message_in_sight_and_shows_the_agent_working(
    shared_stack: LocalStackProcess,
    new_user: tuple[str, str],
    contexts: Contexts,
    screenshot: Screenshot,
) -> None:
    # Given a signed-in user whose agent is asleep, in a short window, and a message long enough to fill it
    tab = ChatPage.open(contexts(viewport={"width": 1000, "height": 520}), shared_stack.endpoints["webUrl"])
    tab.sign_in(*new_user)
    tab.expect_chat()
    tab.page.evaluate(SAMPLER)
    long_message = "\n".join(f"line {n} of a long question" for n in range(1, 25)) + "\nhello after the wait"

    # When it is sent and the agent wakes up to answer it
    tab.send(long_message)
    expect(tab.page.locator("#starting-banner")).to_be_visible(timeout=15_000)
    screenshot(tab, "start-wait-banner")
    # A busy machine can take minutes to boot OpenClaw: the wait itself is what is under test.
    tab.wait_reply("You said: line 1", timeout=400_000)
    samples: list[dict[str, Any]] = tab.page.evaluate("window.__samples")
    waiting = [s for s in samples if s["banner"]]
    assert waiting, "the banner never showed"

    # Then the bar only moved forward and never reached the end while the banner showed
    percents = [s["percent"] for s in waiting if s["percent"] is not None]
    assert percents and percents == sorted(percents) and max(percents) < 100
    # And the seconds left never went up, nothing said "almost there", and no text stayed for over 1.5 s
    lefts = [n for n in (seconds_left(s["eta"]) for s in waiting) if n is not None]
    assert lefts == sorted(lefts, reverse=True)
    assert not any("almost" in s["eta"] for s in waiting)
    longest, run = 0, 1
    for before, after in zip(waiting, waiting[1:], strict=False):
        run = run + 1 if after["eta"] == before["eta"] else 1
        longest = max(longest, run)
    assert longest * 0.1 <= 1.5, f"one ETA text stayed {longest * 0.1:.1f} s"
    # And the message just sent stayed in sight the whole time the banner showed
    assert all(s["mineVisible"] for s in waiting), [s for s in waiting if not s["mineVisible"]][:3]
    # And once the agent ran, its reply showed it working before any text, then the indicator went away
    assert any(s["typing"] and s["status"] == "running" for s in samples)
    expect(tab.page.locator("#message-list .typing")).to_have_count(0)
    assert tab.console_errors == []
