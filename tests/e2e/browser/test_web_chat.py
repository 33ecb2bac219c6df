"""The web chat in a real Chromium against the local stack (real functions, bridge, OpenClaw, offline model).

Each test signs in a user of its own on a shared stack, except the restart test, which owns its stack.
Screenshots of the main states land in tests/e2e/artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.browser.pages import ChatPage
from tests.e2e.harness import LocalStackProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

Contexts = Callable[..., BrowserContext]
Screenshot = Callable[[ChatPage, str], Path]

# Chromium reports a refused connection itself (no page code can silence it): expected only while the
# stack is down in the restart test.
NETWORK_DOWN = (r"ERR_CONNECTION_REFUSED", r"WebSocket connection to .* failed")


def signed_in(
    contexts: Contexts, stack: LocalStackProcess, user: tuple[str, str], **options: object
) -> ChatPage:
    tab = ChatPage.open(contexts(**options), stack.endpoints["webUrl"])
    tab.sign_in(*user)
    tab.expect_chat()
    return tab


def stored_messages(stack: LocalStackProcess, user: tuple[str, str]) -> list[dict[str, object]]:
    """Every message of the user's conversations, as the HTTP API returns them."""
    token = stack.login(*user)
    out: list[dict[str, object]] = []
    for conversation in stack.api("GET", "/api/conversations", token).json()["items"]:
        path = f"/api/conversations/{conversation['conversationId']}/messages?limit=100"
        out += stack.api("GET", path, token).json()["items"]
    return out


def test_sign_in_send_stream_reload_and_a_second_tab_sees_the_stream(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given the sign-in page, used with the keyboard only
    context = contexts()
    tab = ChatPage.open(context, shared_stack.endpoints["webUrl"])
    expect(tab.page.get_by_role("heading", name="Sign in to your agent")).to_be_visible()
    screenshot(tab, "01-sign-in")
    tab.sign_in_with_keyboard(*new_user)
    tab.expect_chat()
    expect(tab.composer).to_be_focused()

    # When the first message wakes the agent
    tab.send("hello from the browser")

    # Then the start-up shows its phase and an ETA, and the reply streams in
    banner = tab.page.locator("#starting-banner")
    expect(banner).to_be_visible(timeout=15_000)
    expect(tab.page.locator("#starting-eta")).to_contain_text(re.compile(r"s left|taking longer than usual"))
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Starting")
    screenshot(tab, "02-starting-banner")
    tab.wait_reply("You said: hello from the browser")
    expect(banner).to_be_hidden()
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Running")

    # And a second tab of the same user (signed in through shared storage) watches the next reply stream
    second = ChatPage.open(context, shared_stack.endpoints["webUrl"])
    second.expect_chat()
    expect(second.messages("user")).to_have_count(1)  # it opened the latest conversation
    tab.send("slowly count to 30")
    streaming = second.page.locator("#message-list article.message.assistant.streaming")
    expect(streaming).to_contain_text(re.compile(r"\b3\b"), timeout=60_000)
    assert "30" not in streaming.inner_text()  # seen mid-stream, not after the end
    second.wait_reply(re.compile(r"\b29 30\s*$"))
    tab.wait_reply(re.compile(r"\b29 30\s*$"))

    # When the agent answers in Markdown
    tab.send("markdown demo")
    reply = tab.wait_reply("hello from the offline model")

    # Then it is rendered: heading, list, table, link, code block with a copy button
    expect(reply.get_by_role("heading", name="What the chat can show")).to_be_visible()
    expect(reply.locator("li strong", has_text="bold")).to_be_visible()
    expect(reply.locator("table td", has_text="this model")).to_be_visible()
    link = reply.get_by_role("link", name="link to OpenClaw")
    expect(link).to_have_attribute("href", "https://docs.openclaw.ai")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    expect(reply.locator("pre code")).to_contain_text('print("hello from the offline model")')
    expect(reply.get_by_role("button", name="Copy code")).to_be_visible()
    screenshot(tab, "03-chat-streamed-reply")

    # When the page is reloaded
    tab.page.reload()
    tab.expect_chat()

    # Then the whole history is there, in order
    expect(tab.bodies("user")).to_have_text(["hello from the browser", "slowly count to 30", "markdown demo"])
    expect(tab.messages("assistant")).to_have_count(3)
    expect(tab.messages("assistant").nth(1)).to_contain_text("29 30")
    assert tab.console_errors == [] and second.console_errors == []


def test_stop_aborts_a_running_reply_and_markup_in_messages_renders_as_text(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts
) -> None:
    # Given a long, slow reply under way
    tab = signed_in(contexts, shared_stack, new_user)
    tab.send("slowly count to 2000")
    streaming = tab.page.locator("#message-list article.message.assistant.streaming")
    expect(streaming).to_contain_text(re.compile(r"\b5\b"), timeout=120_000)

    # When the stop button is pressed
    tab.page.get_by_role("button", name="Stop this reply").click()

    # Then the reply ends as stopped, far from its end, and stays so
    stopped = tab.page.locator("#message-list article.message.assistant.stopped")
    expect(stopped).to_contain_text("Stopped", timeout=30_000)
    text = stopped.inner_text()
    tab.page.wait_for_timeout(1500)
    assert stopped.inner_text() == text and "2000" not in text
    expect(tab.page.get_by_role("button", name="Stop this reply")).to_be_hidden()

    # And the agent is free for the next message
    tab.send("say 3 words")
    tab.wait_reply("word1 word2 word3")
    assert tab.console_errors == []

    # Given the same user and agent (an agent of its own would boot another OpenClaw)
    attack = "<img src=x onerror=alert(1)> and <script>alert(2)</script> **bold**"

    # When a message with markup is sent and echoed back by the same agent
    tab.send(attack)
    reply = tab.wait_reply("You said:")

    # Then both sides show the markup as text; nothing ran and no element was made of it
    expect(tab.messages("user").last).to_contain_text("<img src=x onerror=alert(1)>")
    expect(reply).to_contain_text("<img src=x onerror=alert(1)>")
    expect(reply).to_contain_text("<script>alert(2)</script>")
    expect(reply.locator("strong", has_text="bold")).to_be_visible()  # Markdown still works
    assert tab.page.locator("#message-list img, #message-list script").count() == 0
    tab.page.wait_for_timeout(500)
    assert tab.dialogs == []
    assert tab.console_errors == []

    # And after a reload (the history path renders it too)
    tab.page.reload()
    tab.expect_chat()
    expect(tab.messages("assistant").last).to_contain_text("<img src=x onerror=alert(1)>")
    assert tab.page.locator("#message-list img, #message-list script").count() == 0
    assert tab.dialogs == []


def test_a_wrong_password_shows_an_error_and_opens_no_websocket(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts
) -> None:
    # Given the sign-in page
    tab = ChatPage.open(contexts(), shared_stack.endpoints["webUrl"])

    # When the password is wrong
    tab.sign_in(new_user[0], "not-the-password")

    # Then the page says so, keeps the form, and never opened a WebSocket or stored a token
    expect(tab.page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    expect(tab.page.get_by_label("Password", exact=True)).to_be_focused()
    tab.page.wait_for_timeout(500)
    assert tab.websockets == []
    storage = tab.page.evaluate("JSON.stringify(Object.keys(localStorage))")
    assert "openclaw.auth" not in storage
    # Cognito answers a wrong password with HTTP 400, which Chromium logs itself.
    assert tab.errors_except(r"status of 400") == []

    # And the right password then works
    tab.sign_in(*new_user)
    tab.expect_chat()
    assert len(tab.websockets) == 1


def test_settings_persist_and_a_telegram_link_code_appears(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given the settings dialog
    tab = signed_in(contexts, shared_stack, new_user)
    page = tab.page
    page.get_by_role("button", name="Settings").click()
    dialog = page.get_by_role("dialog", name="Settings")
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Provider")).to_have_value("")  # the stack's default
    expect(page.get_by_label("Time zone")).to_have_value("UTC")

    # When a value the API refuses is saved
    page.get_by_label("Stop the agent after this many idle minutes").fill("999")
    page.get_by_role("button", name="Save").click()

    # Then its reason is shown and nothing is stored
    expect(page.locator("#settings-error")).to_contain_text("Idle timeout must be a whole number of minutes")

    # When valid values are saved
    page.get_by_label("Provider").select_option("anthropic")
    page.get_by_label("Model id").fill("claude-sonnet-4-5")
    page.get_by_label("Stop the agent after this many idle minutes").fill("45")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#settings-saved")).to_contain_text("Saved")

    # And a Telegram link code is asked for
    expect(page.locator("#telegram-status")).to_contain_text("Not linked")
    page.get_by_role("button", name="Get a link code").click()
    expect(page.locator("#telegram-command")).to_have_text(re.compile(r"^/link [A-Z2-9]{8}$"))
    expect(page.locator("#telegram-expiry")).to_have_text(re.compile(r"^(10:00|9:5\d)$"))
    screenshot(tab, "04-settings")
    code = page.locator("#telegram-command").inner_text().split()[1]

    # Then after a reload the settings and the pending code are still there
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    page.reload()
    tab.expect_chat()
    page.get_by_role("button", name="Settings").click()
    expect(page.get_by_label("Provider")).to_have_value("anthropic")
    expect(page.get_by_label("Model id")).to_have_value("claude-sonnet-4-5")
    expect(page.get_by_label("Stop the agent after this many idle minutes")).to_have_value("45")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    expect(page.locator("#telegram-command")).to_have_text(f"/link {code}")
    settings = shared_stack.api("GET", "/api/settings", shared_stack.login(*new_user)).json()
    assert settings["model"] == "anthropic/claude-sonnet-4-5" and settings["idleTimeoutMinutes"] == 45
    assert tab.errors_except(r"status of 400") == []  # the refused save


def test_it_works_on_a_phone_in_dark_mode(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given a phone-sized screen that prefers dark colours
    tab = signed_in(
        contexts,
        shared_stack,
        new_user,
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
        is_mobile=True,
        has_touch=True,
    )
    page = tab.page

    # Then nothing overflows sideways, the palette is dark and the composer is usable
    assert page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert sum(int(c) for c in re.findall(r"\d+", background)[:3]) < 150
    expect(page.locator("#sidebar")).to_be_hidden()

    # When the conversation list is opened from the menu button with the keyboard
    page.get_by_role("button", name="Conversations").focus()
    page.keyboard.press("Enter")

    # Then it slides in with focus on "New conversation", and Escape closes it again
    expect(page.get_by_role("button", name="+ New conversation")).to_be_focused()
    page.wait_for_timeout(300)  # the slide-in
    assert page.evaluate("document.scrollingElement.scrollLeft") == 0
    screenshot(tab, "05-phone-dark-conversations")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    assert tab.console_errors == []


def _free_port_base(count: int = 6) -> int:
    """A base port with `count` free ports after it (the restart must come back on the same ports)."""
    for base in range(20_000, 60_000, 97):
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", base + offset))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no free range of ports")


def test_offline_is_shown_and_a_message_typed_offline_is_delivered_once_after_a_restart(
    tmp_path: Path, contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given a chat on a stack that is about to go away (fixed ports, so it comes back where it was)
    stack = LocalStackProcess(tmp_path / "state", "--port-base", str(_free_port_base())).start()
    try:
        user = (stack.endpoints["username"], stack.endpoints["password"])
        tab = signed_in(contexts, stack, user)
        tab.send("hello before the outage")
        tab.wait_reply("You said: hello before the outage")

        # When the local API stand-ins stop
        assert stack.stop() == 0

        # Then the page says it is offline and queues what is typed
        expect(tab.page.locator("#connection")).to_have_text("Offline", timeout=30_000)
        expect(tab.page.locator("#offline-banner")).to_contain_text("You are offline")
        tab.send("typed while offline")
        expect(tab.messages("user").last).to_contain_text("Waiting for the connection")
        expect(tab.page.locator("#offline-banner")).to_contain_text(
            "1 message(s) will be sent", timeout=5_000
        )
        screenshot(tab, "06-offline")

        # When the stack comes back
        stack.start()

        # Then the page reconnects by itself and the message is sent and answered
        tab.expect_chat()
        tab.wait_reply("You said: typed while offline")
        expect(tab.messages("user").last).not_to_contain_text("Waiting")

        # And it was stored exactly once (a reload shows it once, and so does the API)
        tab.page.reload()
        tab.expect_chat()
        expect(tab.bodies("user")).to_have_text(["hello before the outage", "typed while offline"])
        texts = [m["content"] for m in stored_messages(stack, user) if m["role"] == "user"]
        assert texts.count("typed while offline") == 1
        assert tab.errors_except(*NETWORK_DOWN) == []
    finally:
        stack.stop()


def _seed_conversation(stack: LocalStackProcess, user_id: str, conversation_id: str, count: int) -> None:
    """A stored conversation of `count` messages, alternating user and agent, oldest first."""
    dynamodb, table = stack.client("dynamodb"), stack.table("CONVERSATIONS_TABLE")
    pk = {"S": f"USER#{user_id}"}
    now = time.time() - count
    for i in range(1, count + 1):
        message_id = f"01J{i:023d}"
        dynamodb.put_item(
            TableName=table,
            Item={
                "PK": pk,
                "SK": {"S": f"MSG#{conversation_id}#{message_id}"},
                "messageId": {"S": message_id},
                "conversationId": {"S": conversation_id},
                "role": {"S": "user" if i % 2 else "assistant"},
                "content": {"S": f"seeded message {i}"},
                "channel": {"S": "web"},
                "createdAt": {"N": str(now + i)},
            },
        )
    dynamodb.put_item(
        TableName=table,
        Item={
            "PK": pk,
            "SK": {"S": f"CONV#{conversation_id}"},
            "conversationId": {"S": conversation_id},
            "title": {"S": "A long conversation"},
            "createdAt": {"N": str(now)},
            "updatedAt": {"N": str(now + count)},
        },
    )


def test_history_pages_in_as_the_user_scrolls_up_and_the_agent_starts_and_stops_by_hand(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts
) -> None:
    # Given a stored conversation of 75 messages (the page loads 30 at a time)
    token = shared_stack.login(*new_user)
    user_id = _sub(token)
    _seed_conversation(shared_stack, user_id, "long-one", 75)
    tab = signed_in(contexts, shared_stack, new_user)

    # Then the latest page is shown, newest at the bottom
    expect(tab.bodies("user").or_(tab.bodies("assistant")).last).to_have_text("seeded message 75")
    expect(tab.page.locator("#message-list article.message")).to_have_count(30)

    # When the user scrolls to the top, twice
    for shown in (60, 75):
        tab.page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
        expect(tab.page.locator("#message-list article.message")).to_have_count(shown)

    # Then the whole conversation is there in order, and its start is marked
    texts = tab.page.locator("#message-list article.message .body").all_inner_texts()
    assert texts == [f"seeded message {i}" for i in range(1, 76)]
    expect(tab.page.locator("#history-status")).to_have_text("Start of the conversation")

    # When the agent is started by hand
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Asleep")
    tab.page.get_by_role("button", name="Start agent").click()

    # Then it starts and runs; and "Stop the agent" puts it back to sleep
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Running", timeout=120_000)
    tab.page.get_by_role("button", name="Stop the agent").click()
    expect(tab.page.locator("#agent-status")).to_have_text(re.compile("Stopping|Asleep"))
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Asleep", timeout=120_000)
    assert tab.console_errors == []


@pytest.mark.timeout(1200)  # two OpenClaw boots, each minutes long on a loaded machine
def test_openclaw_restarting_mid_reply_is_shown_as_a_restart_then_the_chat_goes_on(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given a reply that is streaming
    tab = signed_in(contexts, shared_stack, new_user)
    user_id = _sub(shared_stack.login(*new_user))
    tab.send("slowly count to 60")
    streaming = tab.page.locator("#message-list article.message.assistant.streaming")
    expect(streaming).to_contain_text(re.compile(r"\b3\b"), timeout=480_000)
    [task] = [t for t in shared_stack.running_tasks() if t["userId"] == user_id]
    # (every text the reply shows from here on is recorded, to check nothing is shown twice)
    tab.page.evaluate(
        """() => {
          window.replyTexts = [];
          const list = document.querySelector("#message-list");
          new MutationObserver(() => {
            const body = list.querySelector("article.message.assistant .body");
            if (body) window.replyTexts.push(body.textContent);
          }).observe(list, { subtree: true, childList: true, characterData: true });
        }"""
    )

    # When only OpenClaw dies
    shared_stack.kill_openclaw(task)

    # Then the banner says the agent is restarting (not waking up), with a countdown
    banner = tab.page.locator("#starting-banner")
    expect(banner).to_be_visible(timeout=30_000)
    expect(tab.page.locator("#starting-title")).to_have_text("Restarting your agent")
    expect(tab.page.locator("#starting-phase")).to_have_text("OpenClaw stopped unexpectedly")
    expect(tab.page.locator("#starting-eta")).to_contain_text(re.compile(r"s left|taking longer than usual"))
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Restarting")
    screenshot(tab, "08-openclaw-restarting")

    # And once OpenClaw is back the chat is back to normal, with the reply in full, once
    tab.wait_reply(re.compile(r"\b59 60\s*$"), timeout=600_000)
    expect(banner).to_be_hidden()
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Running")
    expect(tab.messages("assistant")).to_have_count(1)
    # And the restarted run, writing the count again, never showed a number twice ("1 2 3 1 2 ...")
    final = " ".join(
        tab.page.evaluate(
            "document.querySelector('#message-list article.message.assistant .body').textContent"
        ).split()
    )
    shown = [" ".join(text.split()) for text in tab.page.evaluate("window.replyTexts")]
    assert shown and all(final.startswith(text) for text in shown), shown[-3:]
    assert tab.console_errors == []


def _sub(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


def test_a_forced_password_change_is_asked_for_and_then_signs_in(
    shared_stack: LocalStackProcess, contexts: Contexts
) -> None:
    # Given a user an administrator created with a temporary password
    username = "temporary@example.com"
    shared_stack.client("cognito-idp").admin_create_user(
        UserPoolId=shared_stack.endpoints["userPoolId"],
        Username=username,
        TemporaryPassword="Temporary-1!",
        UserAttributes=[{"Name": "email", "Value": username}, {"Name": "email_verified", "Value": "true"}],
        MessageAction="SUPPRESS",
    )
    tab = ChatPage.open(contexts(), shared_stack.endpoints["webUrl"])

    # When they sign in with it
    tab.sign_in(username, "Temporary-1!")

    # Then the page asks for a new password, checks the two agree, and then signs in
    expect(tab.page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    tab.page.get_by_label("New password", exact=True).fill("Brand-new-pass-1!")
    tab.page.get_by_label("Repeat the new password").fill("Brand-new-pass-2!")
    tab.page.get_by_role("button", name="Set password and sign in").click()
    expect(tab.page.locator("#newpassword-error")).to_have_text("The two passwords differ.")
    tab.page.get_by_label("Repeat the new password").fill("Brand-new-pass-1!")
    tab.page.get_by_role("button", name="Set password and sign in").click()
    tab.expect_chat()
    assert len(tab.websockets) == 1

    # And the new password is the one that works from now on
    assert shared_stack.login(username, "Brand-new-pass-1!")
    assert tab.console_errors == []


def test_opening_the_chat_wakes_the_agent_and_the_setting_says_what_that_costs_and_turns_it_off(
    shared_stack: LocalStackProcess, new_user: tuple[str, str], contexts: Contexts, screenshot: Screenshot
) -> None:
    # Given a user with Wake on open on (the default; the fixture turned it off)
    token = shared_stack.login(*new_user)
    user_id = _sub(token)
    on = shared_stack.api("PUT", "/api/settings", token, json={"wakeOnIntent": True})
    assert on.status_code == 200, on.text

    # When they open the chat and do nothing else
    tab = signed_in(contexts, shared_stack, new_user)

    # Then the agent wakes (one task, marked as woken without a message) and the banner says so
    expect(tab.page.locator("#agent-status")).to_have_text(re.compile("Starting|Running"), timeout=30_000)
    assert len([t for t in shared_stack.tasks() if t["userId"] == user_id]) == 1
    assert shared_stack.task_state(user_id).get("warmSince") is not None

    # And the settings dialog explains it, with what a wake nobody follows up costs
    page = tab.page
    page.get_by_role("button", name="Settings").click()
    wake = page.get_by_label("Wake my agent when I open the chat or start typing")
    expect(wake).to_be_checked()
    expect(page.locator("#settings-wake-cost")).to_contain_text(
        re.compile(r"stops itself after 3 min: about \$0\.0\d+")
    )
    screenshot(tab, "09-wake-on-open")

    # When they switch it off, and the agent is stopped
    wake.uncheck()
    expect(page.locator("#settings-wake-saved")).to_contain_text("Off")
    assert shared_stack.api("GET", "/api/settings", token).json()["wakeOnIntent"] is False
    assert shared_stack.api("POST", "/api/agent/stop", token).status_code == 202
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Asleep", timeout=120_000)

    # Then opening the chat again, focusing and typing in the composer, leaves it asleep
    page.reload()
    tab.expect_chat()
    tab.composer.click()
    tab.composer.type("thinking about what to ask")
    page.wait_for_timeout(3_000)
    expect(tab.page.locator("#agent-status")).to_have_text("Agent: Asleep")
    assert len([t for t in shared_stack.tasks() if t["userId"] == user_id]) == 1
    assert tab.console_errors == []
