"""Wake on intent through the local stack: opening the chat starts the agent once (ten warm frames too),
an agent woken without a message stops itself after the short warm timeout, and a message sent while the
warm start is under way is answered by that task."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest

from tests.e2e.harness import ChatClient, LocalStackProcess, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

StartStack = Callable[..., LocalStackProcess]
WARM_MINUTES = 0.25
"""The warm idle timeout for this stack: 15 s instead of the default few minutes (the bridge looks at its
row again at the timeout, so the stop comes within a second or two of it)."""


def _wake_replies(tab: ChatClient) -> list[str]:
    """What each warm frame did, from its reply (a status frame carrying `wake`)."""
    return [f["wake"] for f in tab.of_type("status") if "wake" in f]


async def _warm(tab: ChatClient, times: int = 1) -> None:
    assert tab.ws is not None
    await asyncio.gather(*(tab.ws.send(json.dumps({"action": "warm"})) for _ in range(times)))


async def test_opening_the_chat_starts_the_agent_once_and_unused_it_stops_after_the_warm_timeout(
    start_stack: StartStack,
) -> None:
    stack = start_stack("--parameter", f"WarmIdleTimeoutMinutes={WARM_MINUTES}")
    user_id, token = stack.endpoints["userId"], stack.login()
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # Given an idle agent, When the chat opens and ten warm frames arrive at once (page open, focus,
        # typing, another tab)
        await _warm(tab, 10)
        replies = await until(
            lambda: len(_wake_replies(tab)) == 10 and _wake_replies(tab), 60, "10 replies", tab
        )

        # Then exactly one of them started it, and one task was launched, marked as woken without a message
        assert sorted(replies) == ["awake"] * 9 + ["started"], replies
        assert len(stack.tasks()) == 1
        assert stack.task_state(user_id).get("warmSince") is not None
        assert stack.inbox(user_id) == []

        # When it comes up and nobody writes
        await until(
            lambda: any(f.get("status") == "running" for f in tab.of_type("status")), 300, "running", tab
        )
        running_at = asyncio.get_running_loop().time()
        await until(
            lambda: not stack.running_tasks() and stack.task_state(user_id).get("status") == "Idle",
            180,
            "the agent stopping itself",
            stack,
        )
        stopped_after = asyncio.get_running_loop().time() - running_at

        # Then it stopped itself (not the 5-minute watchdog) soon after the warm timeout, cleanly, and the
        # tab was told; no other task ever ran
        assert WARM_MINUTES * 60 - 5 < stopped_after < WARM_MINUTES * 60 + 60, stopped_after
        statuses = [f["status"] for f in tab.of_type("status") if "wake" not in f]
        assert statuses[-2:] == ["stopping", "idle"], statuses
        (task,) = stack.tasks()
        assert task["exitCode"] == 0, task
        assert "warmSince" not in stack.task_state(user_id)


async def test_a_message_sent_during_the_warm_start_is_answered_by_that_task_which_then_stays(
    start_stack: StartStack,
) -> None:
    stack = start_stack("--parameter", f"WarmIdleTimeoutMinutes={WARM_MINUTES}")
    user_id, token = stack.endpoints["userId"], stack.login()
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # Given the chat opened and woke the agent
        await _warm(tab)
        assert await until(lambda: _wake_replies(tab), 60, "the warm reply", tab) == ["started"]

        # When the person sends a message while it is still starting
        sent = await tab.send_message("say 5 words")
        ack = await tab.ack(sent)
        assert ack["status"] == "starting"

        # Then that task answers it (no second task), and it is no longer "woken without a message"
        reply = await tab.reply_to(sent, timeout=300)
        assert reply["content"].endswith("word5")
        assert len(stack.tasks()) == 1
        assert "warmSince" not in stack.task_state(user_id)

        # And past the warm timeout it is still running: the user's normal idle timeout applies now
        await asyncio.sleep(WARM_MINUTES * 60 + 15)
        assert len(stack.running_tasks()) == 1 and stack.task_state(user_id)["status"] == "Running"
