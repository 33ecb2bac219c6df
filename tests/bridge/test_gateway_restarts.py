"""OpenClaw dying while the agent runs: the bridge, with its real supervisor and client around a stand-in
gateway process that is killed mid-reply, tells every tab it is restarting, then running, and answers the
message once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.app import Bridge
from bridge.gateway_process import GatewayProcess
from bridge.metrics import BridgeMetrics
from bridge.openclaw_client import GatewayClient
from bridge.restarts import RESTART_HEALTH_GRACE
from bridge.telegram_delivery import ChannelDelivery
from local.telegram import TelegramSimulator
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.store.inbox import Settled
from serverless_openclaw.telegram import TelegramClient
from tests.bridge.test_app import (
    TASK,
    Bucket,
    CloudWatch,
    ControlPlaneLink,
    Conversations,
    Settings,
    TaskStateRow,
    _config,
)
from tests.contract.conftest import free_port
from tests.fakes import Clock
from tests.local.servers import serve

REPO = Path(__file__).resolve().parents[2]
BOT_TOKEN = "7000000001:test-token-for-the-simulator"
CHAT = 4242


@dataclass
class RestartingRow(TaskStateRow):
    """The TaskState row, with what the bridge recorded about restarts (`restartingUntil`, None: cleared)."""

    restarting_until: list[float | None] = field(default_factory=list)

    def mark_restarting(self, user_id: str, task_arn: str, until: float | None) -> bool:
        self.restarting_until.append(until)
        return True


@dataclass
class Inbox:
    """Queued messages; what was completed or released."""

    queued: list[InboxItem] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    def claim_next(self, user_id: str, claimer: str, now: float, lease: int) -> InboxItem | None:
        return self.queued.pop(0) if self.queued else None

    def complete(self, item: InboxItem, claimer: str) -> bool:
        self.completed.append(item.message_id)
        return True

    def release(self, item: InboxItem, claimer: str) -> bool:
        self.released.append(item.message_id)
        self.queued.append(item)
        return True

    def renew(self, item: InboxItem, claimer: str, now: float, lease: int) -> bool:
        return True

    def settle(
        self, item: InboxItem, claimer: str, now: float, *, reply: list[Any], guards: Any, failed: Any
    ) -> Settled:
        self.completed.append(item.message_id)
        return Settled.DONE

    def pending(self, user_id: str, now: float) -> list[InboxItem]:
        return list(self.queued)


@dataclass
class Tabs:
    """Everything the user's web tabs were sent, in order: status frames, chunks, ends and errors."""

    frames: list[dict[str, Any]] = field(default_factory=list)

    def open(self, item: InboxItem, message_id: str) -> Tabs.Stream:
        return Tabs.Stream(self.frames)

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        self.frames.append(dict(frame))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == type_]

    def shown(self) -> list[str]:
        """The reply as a tab shows it after each chunk (a rewrite replaces it)."""
        texts, text = [], ""
        for frame in self.of("stream_chunk"):
            text = ("" if frame.get("rewrite") else text) + frame["content"]
            texts.append(text)
        return texts

    @dataclass
    class Stream:
        frames: list[dict[str, Any]]

        async def chunk(self, text: str) -> None:
            self.frames.append({"type": "stream_chunk", "content": text})

        async def rewrite(self, text: str) -> None:
            self.frames.append({"type": "stream_chunk", "content": text, "rewrite": True})

        async def end(self, full_text: str) -> None:
            self.frames.append({"type": "stream_end", "content": full_text})

        async def fail(self, code: str, message: str) -> None:
            self.frames.append({"type": "error", "code": code})


async def eventually(condition: Callable[[], object], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


def _bridge(
    tmp_path: Path, row: RestartingRow, inbox: Inbox, tabs: Tabs, bot: TelegramClient | None = None
) -> Bridge:
    """A bridge whose OpenClaw is the stand-in gateway as a real, supervised child process."""
    port = free_port()
    cfg = _config(tmp_path, OPENCLAW_PORT=str(port))

    def gateway(command: Sequence[str], env: Mapping[str, str], **options: Any) -> GatewayProcess:
        stand_in = [sys.executable, "-m", "tests.bridge.fake_gateway", str(port)]
        return GatewayProcess(stand_in, {**env, "PYTHONPATH": str(REPO)}, backoff_initial=0.2, **options)

    async def find_task_arn() -> str:
        return TASK

    return Bridge(
        cfg,
        task_state=row,
        inbox=inbox,
        conversations=Conversations(),
        settings=Settings(),
        delivery=ChannelDelivery(tabs),
        sync=Bucket(),
        metrics=BridgeMetrics(CloudWatch(), "Test"),
        find_task_arn=find_task_arn,
        model_keys=lambda provider: {},
        telegram_bot=lambda: bot,
        make_gateway=gateway,
        make_gateway_client=GatewayClient,
        make_link=ControlPlaneLink,
        on_exit=lambda: None,
        clock=Clock(),
    )


async def test_openclaw_killed_mid_reply_is_told_as_a_restart_then_running_and_the_reply_comes_once(
    tmp_path: Path,
) -> None:
    # Given a running agent streaming a reply
    row, inbox, tabs = RestartingRow(), Inbox(), Tabs()
    bridge = _bridge(tmp_path, row, inbox, tabs)
    await bridge.start()
    assert bridge.failure is None and bridge.loop is not None and bridge.gateway is not None
    inbox.queued.append(InboxItem("user-a", "m1", "!steady 60", "web", "c1", created_at=1.0))
    bridge.loop.nudge()
    await eventually(lambda: tabs.of("stream_chunk"))
    booted = len(tabs.frames)
    pid = bridge.gateway.pid
    assert pid is not None
    try:
        # When OpenClaw alone is killed
        os.kill(pid, signal.SIGKILL)

        # Then the tabs are told at once that the agent is restarting, with an ETA, and so is /status
        await eventually(lambda: any(f.get("phase") == "restarting" for f in tabs.frames[booted:]), 5)
        [told] = [f for f in tabs.frames[booted:] if f["type"] == "status"]
        assert told["status"] == "starting" and told["etaSeconds"] >= 1
        assert bridge.status()["phase"] == "restarting"
        # And ECS's health check does not count a restart under way against the task
        healthy, reason = bridge.health()
        assert healthy and reason.startswith("restarting openclaw")
        # (unless the restart has gone on too long: then a new task is the way out)
        real = bridge.restarts._monotonic
        bridge.restarts._monotonic = lambda: real() + RESTART_HEALTH_GRACE
        assert bridge.health() == (False, "openclaw gateway down")
        bridge.restarts._monotonic = real
        # And once OpenClaw is back they are told it runs, and the reply ends once, in full
        await eventually(lambda: tabs.of("stream_end") and inbox.completed)
        await bridge.restarts.settled()
        statuses = [(f["status"], f.get("phase")) for f in tabs.frames[booted:] if f["type"] == "status"]
        assert statuses == [("starting", "restarting"), ("running", None)]
        [end] = tabs.of("stream_end")
        answer = " ".join(f"w{i}" for i in range(1, 61))
        assert end["content"] == answer
        # (the restarted run wrote the words already shown again: the tabs never showed them twice)
        assert all(answer.startswith(text) for text in tabs.shown())
        assert not tabs.of("error") and inbox.completed == ["m1"] and inbox.released == []
        # And TaskState said so meanwhile (getStatus reads it), and no longer does
        [until, cleared] = row.restarting_until
        assert until is not None and cleared is None
        status = bridge.status()
        assert status["phase"] == "ready" and len(status["gatewayRestartSeconds"]) == 1
        assert bridge.gateway.pid != pid and bridge.health() == (True, "ok")
    finally:
        await bridge.stop("test over")


async def test_a_telegram_message_answered_when_openclaw_dies_shows_the_restart_then_its_answer(
    tmp_path: Path,
) -> None:
    # Given a running agent answering a Telegram message into its waiting message, on a Telegram stand-in
    telegram = TelegramSimulator(token=BOT_TOKEN)
    with serve(telegram.app) as server:
        bot = TelegramClient(BOT_TOKEN, api_base=server.url, backoff=0.05)
        waiting = bot.send_message(CHAT, "⏳ Waking up your agent…")
        row, inbox, tabs = RestartingRow(), Inbox(), Tabs()
        bridge = _bridge(tmp_path, row, inbox, tabs, bot)
        await bridge.start()
        assert bridge.loop is not None and bridge.gateway is not None
        reply_to = {"chatId": CHAT, "messageId": 1, "placeholderId": waiting}
        inbox.queued.append(
            InboxItem("user-a", "m1", "!steady 60", "telegram", "c1", created_at=1.0, reply_to=reply_to)
        )
        bridge.loop.nudge()
        await eventually(lambda: tabs.of("stream_chunk"))
        pid = bridge.gateway.pid
        assert pid is not None
        try:
            # When OpenClaw alone is killed mid-reply
            os.kill(pid, signal.SIGKILL)

            # Then the waiting message says the agent is restarting, under what was streamed so far
            def notices() -> list[str]:
                return [
                    v for m in telegram.messages[CHAT] for v in m.versions if "restarting your agent" in v
                ]

            await eventually(notices, 10)
            assert notices()[0].startswith("w1")
            # And once OpenClaw is back the same message becomes the whole answer, and nothing else is sent
            answer = " ".join(f"w{i}" for i in range(1, 61))
            await eventually(lambda: tabs.of("stream_end"))
            await bridge.restarts.settled()
            # The channels end side by side: the tabs' stream_end may go out before Telegram's final edit.
            await eventually(lambda: telegram.chat(CHAT)[-1:] == [answer], 10)
            assert telegram.chat(CHAT) == [answer]
            # And while the restarted run wrote again what was shown, no edit showed a word twice
            streamed = [v.split("\n\n")[0] for m in telegram.messages[CHAT] for v in m.versions[1:]]
            assert streamed and all(answer.startswith(text) for text in streamed)
            assert all(answer.startswith(text) for text in tabs.shown())
            await eventually(lambda: inbox.completed)
            assert inbox.completed == ["m1"]
        finally:
            await bridge.stop("test over")


async def test_openclaw_dying_during_boot_is_not_told_as_a_restart(tmp_path: Path) -> None:
    # Given a bridge whose OpenClaw dies once while it boots (the start-up progress is showing)
    row, inbox, tabs = RestartingRow(), Inbox(), Tabs()
    bridge = _bridge(tmp_path, row, inbox, tabs)

    # When it dies before the task is Running
    bridge.restarts.died(1.0)
    bridge.restarts.back()
    await bridge.restarts.settled()

    # Then nothing is told nor recorded: the boot's own progress says what happens
    assert tabs.frames == [] and row.restarting_until == []
