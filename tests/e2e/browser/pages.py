"""The web chat as a test sees it: what a person would do and read, through Playwright locators."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, WebSocket, expect

REPLY_TIMEOUT_MS = 120_000
"""A first message wakes the agent: a local cold start takes 10–20 s on a small machine."""


@dataclass
class ChatPage:
    """One tab of the web chat, recording console errors, uncaught exceptions, dialogs and WebSockets."""

    page: Page
    url: str
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    websockets: list[WebSocket] = field(default_factory=list)

    @classmethod
    def open(cls, context: BrowserContext, url: str) -> ChatPage:
        """A new tab on the chat's URL."""
        chat = cls(context.new_page(), url)
        chat.page.on("console", chat._console)
        chat.page.on("pageerror", lambda error: chat.console_errors.append(f"uncaught: {error}"))
        chat.page.on("dialog", chat._dialog)
        chat.page.on("websocket", lambda ws: chat.websockets.append(ws))
        chat.page.goto(url)
        return chat

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    # ---------------------------------------------------------------------------------- sign-in

    def sign_in_with_keyboard(self, username: str, password: str) -> None:
        """Type the credentials and press Enter, as someone without a mouse would."""
        expect(self.page.get_by_label("Email or username")).to_be_focused()
        self.page.keyboard.type(username)
        self.page.keyboard.press("Tab")
        self.page.keyboard.type(password)
        self.page.keyboard.press("Enter")

    def sign_in(self, username: str, password: str) -> None:
        """Fill the sign-in form and submit it."""
        self.page.get_by_label("Email or username").fill(username)
        self.page.get_by_label("Password", exact=True).fill(password)
        self.page.get_by_role("button", name="Sign in").click()

    def expect_chat(self) -> None:
        """The chat is shown and its connection is up."""
        expect(self.page.locator("#connection")).to_have_text("Online", timeout=30_000)

    # ---------------------------------------------------------------------------------- chat

    @property
    def composer(self) -> Locator:
        return self.page.get_by_label("Message", exact=True)

    def send(self, text: str) -> None:
        """Type a message and press Enter."""
        self.composer.fill(text)
        self.composer.press("Enter")

    def messages(self, role: str) -> Locator:
        """Messages of one side: "user" or "assistant"."""
        return self.page.locator(f"#message-list article.message.{role}")

    def bodies(self, role: str) -> Locator:
        """The text of each message of one side, without its "You"/"Agent" label."""
        return self.messages(role).locator(".body")

    def last_reply(self) -> Locator:
        return self.messages("assistant").last

    def wait_reply(self, pattern: str | re.Pattern[str], timeout: int = REPLY_TIMEOUT_MS) -> Locator:
        """The last reply once it has finished and shows `pattern`."""
        reply = self.page.locator("#message-list article.message.assistant.done").last
        expect(reply).to_contain_text(pattern, timeout=timeout)
        return reply

    def open_conversation(self, title: str) -> None:
        """Pick a conversation from the list by its title."""
        self.page.locator("#conversation-list button", has_text=title).first.click()

    def errors_except(self, *allowed: str) -> list[str]:
        """Console errors not matching any of the allowed patterns."""
        return [e for e in self.console_errors if not any(re.search(p, e) for p in allowed)]
