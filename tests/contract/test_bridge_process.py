"""The bridge as ECS runs it (`python -m bridge`) with the real OpenClaw and the offline model.

Around it: moto's server for DynamoDB and S3, an API Gateway stand-in (its dial-out WebSocket and the
`@connections` API) and the ECS metadata endpoint. One bridge boots per test module section; the
tests drive it the way the control plane does — queue in the Inbox, nudge, abort, SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from local.offline_model import OfflineModelServer
from serverless_openclaw import start_estimate
from serverless_openclaw.aws import clients
from serverless_openclaw.config import Tables
from serverless_openclaw.connections import Connection
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.messages import IncomingMessage
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.inbox import InboxStore
from serverless_openclaw.store.intake import IntakeStore
from serverless_openclaw.store.task_state import TaskStateStore
from tests.contract.harness import (
    AgentSocket,
    ManagementServer,
    MetadataServer,
    MotoServer,
    bridge_environment,
    start_bridge,
    start_task,
)

pytestmark = pytest.mark.contract

USER = "contract-user"
CLIENT = "client-tab-1"
BOOT_TIMEOUT = 240.0


@dataclass
class RunningBridge:
    """One bridge process and the stand-ins it talks to."""

    process: asyncio.subprocess.Process
    env: dict[str, str]
    task_arn: str
    agent: AgentSocket
    management: ManagementServer
    log: Path

    @property
    def http(self) -> str:
        """The bridge's own loopback HTTP surface."""
        return f"http://127.0.0.1:{self.env['BRIDGE_PORT']}"

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        """GET one of the bridge's endpoints."""
        try:
            with urllib.request.urlopen(self.http + path, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def output(self) -> str:
        """Everything the bridge printed (for failure messages)."""
        return self.log.read_text(errors="replace")[-6000:]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stores(moto: MotoServer, monkeypatch_module: pytest.MonkeyPatch) -> Tables:
    """The test's own view of the tables (through the same store classes as the control plane)."""
    monkeypatch_module.setenv("AWS_ENDPOINT_URL", moto.url)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch_module.setenv(name, "testing")
    monkeypatch_module.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.reset()
    return Tables.from_env(moto.tables)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()
    clients.reset()


async def until(
    predicate: Callable[[], Any], timeout: float, what: str, bridge: RunningBridge | None = None
) -> Any:
    """Poll until predicate() is truthy (never a fixed sleep); fails with the bridge's output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        await asyncio.sleep(0.2)
    detail = f"\n--- bridge output ---\n{bridge.output()}" if bridge else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")


def queue(tables: Tables, text: str, conversation: str = "conv-1") -> str:
    """A user message accepted by the control plane (history + Inbox)."""
    accepted = IntakeStore(tables).accept(IncomingMessage(USER, text, "web", conversation), time.time())
    return accepted.message_id


@pytest_asyncio.fixture(loop_scope="session")
async def launch(
    moto: MotoServer, stores: Tables, offline_model: OfflineModelServer, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Start bridges like ECS would (each with its own task ARN); stops what is left at the end."""
    started: list[RunningBridge] = []
    ConnectionStore(stores.connections).put(Connection(CLIENT, USER, "client", time.time()))

    async def _launch(state_root: Path | None = None, **extra: str) -> RunningBridge:
        task_arn = f"arn:aws:ecs:us-east-1:123456789012:task/contract/{len(started) + 1}-{int(time.time())}"
        start_task(stores, USER, task_arn)
        agent, management, metadata = AgentSocket(), ManagementServer(), MetadataServer(task_arn)
        management.thread.start()
        metadata.thread.start()
        ws_url = await agent.start()
        env = bridge_environment(
            moto=moto,
            user_id=USER,
            websocket_url=ws_url,
            management_endpoint=management.endpoint,
            metadata_uri=metadata.uri,
            model_url=offline_model.url,
            state_root=state_root or tmp_path / f"task{len(started) + 1}",
            **extra,
        )
        log = tmp_path / f"bridge{len(started) + 1}.log"
        process = await start_bridge(env, log)
        bridge = RunningBridge(process, env, task_arn, agent, management, log)
        started.append(bridge)
        tasks = TaskStateStore(stores.task_state)
        await until(
            lambda: process.returncode is not None or tasks.get(USER).status is Status.RUNNING,
            BOOT_TIMEOUT,
            "the bridge to mark its task Running",
            bridge,
        )
        assert process.returncode is None, bridge.output()
        return bridge

    yield _launch
    for bridge in started:
        if bridge.process.returncode is None:
            bridge.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(bridge.process.wait(), 60)
            except TimeoutError:
                bridge.process.kill()
                await bridge.process.wait()
        await bridge.agent.stop()
        bridge.management.shutdown()


async def test_boot_answer_backup_and_clean_sigterm(
    launch: Callable[..., Any], stores: Tables, moto: MotoServer
) -> None:
    # Given a bridge booted as ECS would boot it
    bridge: RunningBridge = await launch()

    # Then it dialled out with its user, its task and a token whose hash TaskState holds, and it is healthy
    assert bridge.agent.headers["x-agent-user"] == USER
    assert bridge.agent.headers["x-agent-task-arn"] == bridge.task_arn
    assert TaskStateStore(stores.task_state).get(USER).agent_token_hash
    status, health = await asyncio.to_thread(bridge.get, "/health")
    assert status == 200, health
    _, info = await asyncio.to_thread(bridge.get, "/status")
    assert set(info["startup"]) >= {"metadata", "restore", "config", "gateway", "handshake", "dial-out"}
    # And the user's tabs were told each start-up step with its ETA (a user with no start of their own yet:
    # the stack's 45 s split over the phases), then "running", in that order
    statuses = [
        (f["status"], f.get("phase"), f.get("etaSeconds"))
        for f in bridge.management.received(CLIENT, "status")
    ]
    expected = start_estimate.estimate((), 45)
    assert statuses == [
        ("starting", "restoring", round(expected.remaining("restoring", 0.0))),
        ("starting", "booting", round(expected.remaining("booting", 0.0))),
        ("running", None, None),
    ]

    # When the user asks it to create a file (queued, then nudged like ws_message does)
    message = queue(stores, "create file test.md with the text hello from the contract test")
    await bridge.agent.send({"type": "nudge"})

    # Then the reply streams to the user's tab and ends with the offline model's answer
    end = await until(
        lambda: bridge.management.received(CLIENT, "stream_end"), 180, "the streamed reply", bridge
    )
    assert "(offline model)" in end[-1]["content"] and "test.md" in end[-1]["content"]
    assert end[-1]["conversationId"] == "conv-1"
    # And it is in the history, the Inbox is empty, and the file is backed up to S3
    history = ConversationStore(stores.conversations).messages(USER, "conv-1").items
    assert history[0]["role"] == "assistant" and history[0]["replyTo"] == message
    assert InboxStore(stores.inbox).items(USER) == []
    s3 = moto.client("s3")
    key = f"users/{USER}/workspace/test.md"
    body = await until(lambda: _object(s3, moto.bucket, key), 60, "test.md in S3", bridge)
    assert body == b"hello from the contract test"

    # When ECS stops the task (SIGTERM)
    bridge.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(bridge.process.wait(), 120)

    # Then it exits 0, the row is released (Idle, no task), and a manifest describes the backup
    assert code == 0, f"exit code {code}\n{bridge.output()}"
    state = TaskStateStore(stores.task_state).get(USER)
    assert state.status is Status.IDLE and state.task_arn is None
    manifest = json.loads(s3.get_object(Bucket=moto.bucket, Key=f"users/{USER}/manifest.json")["Body"].read())
    assert "workspace/test.md" in manifest["files"]
    assert any(name.startswith("state/agents/") and name.endswith(".sqlite") for name in manifest["files"])


def _object(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


@pytest.mark.timeout(900)  # three OpenClaw boots (two tasks and a gateway restart): 300 s ran out under load
async def test_restore_abort_busy_gateway_crash_and_sigterm_mid_run(
    launch: Callable[..., Any], stores: Tables, moto: MotoServer
) -> None:
    # Given a first task that wrote a file and was stopped (its state is in S3)
    first: RunningBridge = await launch()
    queue(stores, "create file notes.md with the text remember the milk", "conv-r")
    await first.agent.send({"type": "nudge"})
    await until(lambda: first.management.received(CLIENT, "stream_end"), 180, "the first reply", first)
    first.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(first.process.wait(), 120) == 0, first.output()

    # When a new task with an empty disk starts for the same user
    second: RunningBridge = await launch(SHUTDOWN_GRACE_SECONDS="2")

    # Then it restored the workspace and the agent can show the file
    queue(stores, "show notes.md", "conv-r")
    await second.agent.send({"type": "nudge"})
    end = await until(lambda: second.management.received(CLIENT, "stream_end"), 180, "the reply", second)
    assert "remember the milk" in end[-1]["content"]

    # When a slow reply runs and the user presses stop (the control plane forwards an abort)
    queue(stores, "slowly count to 60", "conv-a")
    await second.agent.send({"type": "nudge"})
    await until(
        lambda: (
            second.management.received(CLIENT, "stream_chunk")[-1:]
            and second.management.received(CLIENT, "stream_chunk")[-1]["conversationId"] == "conv-a"
        ),
        120,
        "the slow reply to start streaming",
        second,
    )
    await second.agent.send({"type": "abort", "conversationId": "conv-a"})

    # Then the stream ends as stopped and the item is done
    errors = await until(
        lambda: [
            f for f in second.management.received(CLIENT, "error") if f.get("conversationId") == "conv-a"
        ],
        60,
        "the stopped notice",
        second,
    )
    assert errors[-1]["code"] == "aborted"

    # When two messages arrive for one conversation at once
    first_id = queue(stores, "say 40 words", "conv-b")
    second_id = queue(stores, "this is the second message", "conv-b")
    await second.agent.send({"type": "nudge"})

    # Then both are answered, in order
    def answered() -> list[str]:
        items = ConversationStore(stores.conversations).messages(USER, "conv-b").items
        return [m["replyTo"] for m in reversed(items) if m["role"] == "assistant"]

    assert await until(lambda: len(answered()) == 2 and answered(), 180, "both replies", second) == [
        first_id,
        second_id,
    ]

    # When OpenClaw itself dies
    _, info = await asyncio.to_thread(second.get, "/status")
    os.kill(info["gatewayPid"], signal.SIGKILL)
    await until(lambda: second.get("/status")[1]["gatewayRestarts"] >= 1, 60, "the gateway restart", second)

    # Then the next message is still answered
    queue(stores, "still there?", "conv-c")
    await second.agent.send({"type": "nudge"})
    await until(
        lambda: [
            f for f in second.management.received(CLIENT, "stream_end") if f["conversationId"] == "conv-c"
        ],
        240,
        "the reply after the gateway restart",
        second,
    )

    # When ECS stops the task while a long reply is running, with a short grace period
    long_id = queue(stores, "slowly count to 200", "conv-d")
    await second.agent.send({"type": "nudge"})
    await until(
        lambda: any(
            f["conversationId"] == "conv-d" for f in second.management.received(CLIENT, "stream_chunk")
        ),
        120,
        "the long reply to start",
        second,
    )
    second.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(second.process.wait(), 120)

    # Then nothing is lost: past the 2 s grace the run is aborted and the message queued again for the
    # next task; the exit is clean, the row is released and the final backup is written
    assert code == 0, second.output()
    inbox = {i.message_id: i for i in InboxStore(stores.inbox).items(USER)}
    assert inbox[long_id].status == "queued", second.output()
    assert TaskStateStore(stores.task_state).get(USER).status is Status.IDLE
    manifest = json.loads(
        moto.client("s3").get_object(Bucket=moto.bucket, Key=f"users/{USER}/manifest.json")["Body"].read()
    )
    assert "workspace/notes.md" in manifest["files"]
