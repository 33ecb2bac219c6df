"""Messages typed quickly, or while offline, are answered and stored in the order they were typed.

The local WebSocket stand-in hands every frame to the function at once, as API Gateway does, so frames
sent back to back race each other to the Inbox. Create-then-show pairs make a wrong order visible: the
agent would show a file before creating it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, WebSocketRoute, expect

from tests.e2e.browser.pages import REPLY_TIMEOUT_MS, ChatPage
from tests.e2e.harness import LocalStackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

Contexts = Callable[..., BrowserContext]


class Network:
    """The tab's path to the WebSocket API, which a test can cut and restore (as a train tunnel would)."""

    def __init__(self) -> None:
        self.up = True
        self.open: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    def route(self, ws: WebSocketRoute) -> None:
        """Pass a new connection through to the stack, or refuse it while the network is down."""
        if not self.up:
            ws.close(code=1006, reason="offline")
            return
        self.open.append((ws, ws.connect_to_server()))

    def cut(self, context: BrowserContext) -> None:
        """The network goes away: open connections drop and new ones fail."""
        self.up = False
        context.set_offline(True)
        for page_side, server_side in self.open:
            server_side.close()
            page_side.close(code=1006, reason="offline")
        self.open.clear()

    def restore(self, context: BrowserContext) -> None:
        """The network is back (the browser fires `online`)."""
        self.up = True
        context.set_offline(False)


def pairs(prefix: str, count: int) -> list[str]:
    """`count` create-then-show pairs: each show must come after its create to find the file."""
    typed: list[str] = []
    for i in range(count):
        name = f"{prefix}{i:02d}.md"
        typed += [f"create file {name} with the text {prefix} number {i:02d}", f"show {name}"]
    return typed


def conversation(stack: LocalStackProcess, token: str) -> list[dict[str, Any]]:
    """The user's only conversation as the HTTP API lists it, oldest first."""
    (listed,) = stack.api("GET", "/api/conversations", token).json()["items"]
    path = f"/api/conversations/{listed['conversationId']}/messages?limit=100"
    items: list[dict[str, Any]] = stack.api("GET", path, token).json()["items"]
    return list(reversed(items))


def answered_in(history: list[dict[str, Any]], typed: list[str]) -> list[str]:
    """The typed messages in the order the agent first answered them (a reply's id is taken as its run
    starts)."""
    asked = {m["messageId"]: m["content"] for m in history if m["role"] == "user"}
    replies = sorted((m for m in history if m["role"] == "assistant"), key=lambda m: m["messageId"])
    order = [asked[r["replyTo"]] for r in replies if asked.get(r["replyTo"]) in typed]
    return list(dict.fromkeys(order))


def check_answers(history: list[dict[str, Any]], typed: list[str]) -> None:
    """Each create was answered with "Created", each show with the file's text."""
    by_question = {m["messageId"]: m["content"] for m in history if m["role"] == "user"}
    for reply in (m for m in history if m["role"] == "assistant"):
        question = by_question.get(reply["replyTo"], "")
        if question in typed and question.startswith("create file "):
            assert "Created" in reply["content"], (question, reply["content"])
        elif question in typed and question.startswith("show "):
            name = question.removeprefix("show ").removesuffix(".md")
            assert f"{name[:-2]} number {name[-2:]}" in reply["content"], (question, reply["content"])


def wait_answered(
    tab: ChatPage, stack: LocalStackProcess, token: str, typed: list[str]
) -> list[dict[str, Any]]:
    """The stored conversation once every typed message has a stored reply."""
    deadline = time.monotonic() + REPLY_TIMEOUT_MS * 5 / 1000
    while True:
        history = conversation(stack, token)
        if set(answered_in(history, typed)) == set(typed):
            return history
        if time.monotonic() > deadline:
            raise AssertionError(f"not every message was answered: {[m['content'] for m in history][-12:]}")
        # Waiting inside Playwright: the routed WebSocket's frames are relayed only while it runs.
        tab.page.wait_for_timeout(2000)


def test_messages_typed_back_to_back_and_offline_are_answered_and_stored_in_typed_order(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts
) -> None:
    # Given a signed-in tab whose agent is awake, on a network the test controls
    context = contexts()
    network = Network()
    context.route_web_socket(lambda url: True, network.route)
    tab = ChatPage.open(context, shared_stack.endpoints["webUrl"])
    tab.sign_in(*new_user)
    tab.expect_chat()
    tab.send("good morning")
    tab.wait_reply("You said: good morning", timeout=REPLY_TIMEOUT_MS * 3)
    token = shared_stack.login(*new_user)

    # When 20 messages (10 create-then-show pairs) are typed back to back, without waiting for answers
    quick = pairs("quick", 10)
    for text in quick:
        tab.send(text)

    # Then they are answered in the order they were typed, and the history lists them in that order
    history = wait_answered(tab, shared_stack, token, quick)
    assert [m["content"] for m in history if m["role"] == "user"] == ["good morning", *quick]
    assert answered_in(history, quick) == quick
    check_answers(history, quick)

    # When the network goes away, 10 more are typed, and the network comes back
    network.cut(context)
    expect(tab.page.locator("#connection")).to_have_text("Offline", timeout=30_000)
    offline = pairs("offline", 5)
    for text in offline:
        tab.send(text)
    expect(tab.page.locator("#offline-banner")).to_contain_text("10 message(s) will be sent")
    network.restore(context)
    tab.expect_chat()

    # Then the outbox is answered and stored in typed order too, each message once
    history = wait_answered(tab, shared_stack, token, offline)
    assert [m["content"] for m in history if m["role"] == "user"] == ["good morning", *quick, *offline]
    assert answered_in(history, offline) == offline
    check_answers(history, offline)

    # And a reload shows the conversation in that order
    tab.page.reload()
    tab.expect_chat()
    expect(tab.messages("assistant").last).to_contain_text("offline number 04")
    shown = tab.bodies("user").all_inner_texts()
    assert shown and shown == ["good morning", *quick, *offline][-len(shown) :]
    assert tab.errors_except(r"WebSocket connection to .* failed", r"ERR_INTERNET_DISCONNECTED") == []
