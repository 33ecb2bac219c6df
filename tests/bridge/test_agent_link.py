"""The agent link against a loopback WebSocket server playing API Gateway: it dials, heals and obeys."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.agent_link import AgentLink

USER = "0c8e7a52-3f21-4a7e-9d5b-2f6f1e9b7c44"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/task1"
TOKEN = "Zq3v0b8Jm1kXcR7tYpLw2nHs5dGa9eUf4iOy6TxBqVk"


class FakeApiGateway:
    """A loopback WebSocket API: checks nothing, records handshakes and frames, answers heartbeats."""

    def __init__(self) -> None:
        self.handshakes: list[Headers] = []
        self.refuse_next = 0
        self.accept_heartbeats = True
        self.received: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.server: Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/prod"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.handshakes.append(request.headers)
        if self.refuse_next > 0:
            # What API Gateway answers when the $connect Lambda refuses the agent.
            self.refuse_next -= 1
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.received.append(frame)
                if frame.get("action") == "heartbeat":
                    await ws.send(json.dumps({"type": "heartbeat", "accepted": self.accept_heartbeats}))
        except ConnectionClosed:
            pass

    async def push(self, frame: dict[str, Any] | str) -> None:
        """post_to_connection to the newest agent connection."""
        await self.connections[-1].send(frame if isinstance(frame, str) else json.dumps(frame))

    def heartbeats(self) -> list[dict[str, Any]]:
        return [f for f in self.received if f.get("action") == "heartbeat"]


@pytest.fixture
async def gateway() -> AsyncIterator[FakeApiGateway]:
    fake = FakeApiGateway()
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
        fake.server = server
        yield fake


class Bridge:
    """What the bridge hands the link: callbacks that record what they were told, and a busy flag."""

    def __init__(self) -> None:
        self.nudges = 0
        self.aborts: list[str | None] = []
        self.shutdowns: list[str] = []
        self.superseded = 0
        self.busy = False
        self.fail_nudges = False

    async def on_nudge(self) -> None:
        self.nudges += 1
        if self.fail_nudges:
            raise RuntimeError("drain exploded")

    async def on_abort(self, conversation_id: str | None) -> None:
        self.aborts.append(conversation_id)

    async def on_shutdown(self, reason: str) -> None:
        self.shutdowns.append(reason)

    async def on_superseded(self) -> None:
        self.superseded += 1


@pytest.fixture
def bridge() -> Bridge:
    return Bridge()


def link_options(bridge: Bridge, **overrides: Any) -> dict[str, Any]:
    """AgentLink's arguments as the bridge passes them, with a quick backoff and no periodic heartbeat."""
    return {
        "user_id": USER,
        "task_arn": TASK_ARN,
        "token": TOKEN,
        "on_nudge": bridge.on_nudge,
        "on_abort": bridge.on_abort,
        "on_shutdown": bridge.on_shutdown,
        "on_superseded": bridge.on_superseded,
        "busy": lambda: bridge.busy,
        "heartbeat_interval": 3600.0,
        "backoff_min": 0.01,
        "backoff_max": 0.05,
        **overrides,
    }


@pytest.fixture
async def make_link(gateway: FakeApiGateway, bridge: Bridge) -> AsyncIterator[Callable[..., AgentLink]]:
    links: list[AgentLink] = []

    def make(**overrides: Any) -> AgentLink:
        link = AgentLink(gateway.url, **link_options(bridge, **overrides))
        links.append(link)
        return link

    yield make
    for link in links:
        await link.close()


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `condition` holds (a generous bound, not a timing assertion)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_dials_out_with_the_agent_headers_and_drains_once_connected(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a link to the WebSocket API
    link = make_link()

    # When it starts
    await link.start()

    # Then it connects, presenting who it is, and asks the bridge to drain what queued meanwhile
    assert await link.wait_connected(10)
    assert link.connected
    headers = gateway.handshakes[0]
    assert headers["x-agent-user"] == USER
    assert headers["x-agent-task-arn"] == TASK_ARN
    assert headers["x-agent-token"] == TOKEN
    await eventually(lambda: bridge.nudges == 1)


async def test_commands_from_the_control_plane_reach_the_bridge(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)
    await eventually(lambda: bridge.nudges == 1)

    # When the control plane posts a nudge, aborts (of one conversation, then of whatever runs) and a shutdown
    await gateway.push({"type": "nudge"})
    await gateway.push({"type": "abort", "conversationId": "conv-7"})
    await gateway.push({"type": "abort"})
    await gateway.push({"type": "shutdown", "reason": "idle timeout"})

    # Then each reaches the bridge
    await eventually(lambda: bridge.nudges == 2 and len(bridge.aborts) == 2 and len(bridge.shutdowns) == 1)
    assert bridge.aborts == ["conv-7", None]
    assert bridge.shutdowns == ["idle timeout"]


async def test_heartbeats_carry_the_busy_flag(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a link that heartbeats often
    link = make_link(heartbeat_interval=0.02)
    await link.start()
    assert await link.wait_connected(10)

    # When the bridge is idle, then busy
    await eventually(lambda: len(gateway.heartbeats()) >= 2)
    bridge.busy = True

    # Then the heartbeats say so: first idle, later busy, every one a well-formed frame
    await eventually(lambda: gateway.heartbeats()[-1]["busy"] is True)
    assert gateway.heartbeats()[0] == {"action": "heartbeat", "busy": False}
    assert all(set(f) == {"action", "busy"} for f in gateway.heartbeats())


async def test_a_busy_check_that_raises_is_reported_as_busy(
    gateway: FakeApiGateway, make_link: Callable[..., AgentLink]
) -> None:
    # Given a busy flag that cannot be read
    def broken() -> bool:
        raise RuntimeError("no loop yet")

    link = make_link(busy=broken)

    # When the link heartbeats, then it claims busy (the watchdog must not stop a task that may be working)
    await link.start()
    await eventually(lambda: len(gateway.heartbeats()) >= 1)
    assert gateway.heartbeats()[0]["busy"] is True


async def test_an_accepted_heartbeat_vouches_for_taskstate_as_of_when_it_was_sent(
    gateway: FakeApiGateway, make_link: Callable[..., AgentLink]
) -> None:
    # Given a link whose clock says when each heartbeat left
    ticks = iter(range(1000, 2000))
    confirmed: list[float] = []
    link = make_link(heartbeat_interval=0.02, clock=lambda: float(next(ticks)), on_alive=confirmed.append)

    # When the API accepts its heartbeats
    await link.start()
    await eventually(lambda: len(confirmed) >= 3)

    # Then each acceptance confirms TaskState as of the sending of that heartbeat, in order
    assert confirmed[:3] == [1000.0, 1001.0, 1002.0]


async def test_a_refused_heartbeat_confirms_nothing(
    gateway: FakeApiGateway, make_link: Callable[..., AgentLink]
) -> None:
    gateway.accept_heartbeats = False
    confirmed: list[float] = []
    link = make_link(heartbeat_interval=0.02, on_alive=confirmed.append)
    await link.start()
    await eventually(lambda: len(gateway.heartbeats()) >= 3)
    assert confirmed == []


async def test_a_refused_heartbeat_means_this_task_was_superseded(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given TaskState that no longer references this task
    gateway.accept_heartbeats = False
    link = make_link(heartbeat_interval=0.02)

    # When the link heartbeats several times
    await link.start()
    await eventually(lambda: len(gateway.heartbeats()) >= 3)

    # Then the bridge is told once that it was superseded
    await eventually(lambda: bridge.superseded == 1)
    await eventually(lambda: len(gateway.heartbeats()) >= 5)
    assert bridge.superseded == 1


async def test_reconnects_after_the_server_closes_and_drains_again(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)
    await eventually(lambda: bridge.nudges == 1)

    # When API Gateway closes the connection (its 2-hour limit, a deploy)
    await gateway.connections[0].close(code=1001, reason="going away")

    # Then the link dials again, with the same credentials, and drains what may have arrived meanwhile
    await eventually(lambda: len(gateway.connections) == 2 and link.connected)
    await eventually(lambda: bridge.nudges == 2)
    assert gateway.handshakes[1]["x-agent-token"] == TOKEN
    # And commands flow on the new connection
    await gateway.push({"type": "abort", "conversationId": "c2"})
    await eventually(lambda: bridge.aborts == ["c2"])


async def test_a_refused_handshake_is_retried_until_the_row_is_written(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given $connect refusing the first three attempts (TaskState not written yet)
    gateway.refuse_next = 3
    link = make_link()

    # When the link starts
    await link.start()

    # Then it keeps trying with backoff and gets in
    assert await link.wait_connected(10)
    assert len(gateway.handshakes) == 4
    assert len(gateway.connections) == 1
    await eventually(lambda: bridge.nudges == 1)


async def test_wait_connected_gives_up_while_refused(
    gateway: FakeApiGateway, make_link: Callable[..., AgentLink]
) -> None:
    # Given a WebSocket API that refuses every attempt
    gateway.refuse_next = 10**6
    link = make_link()

    # When the bridge waits briefly for the link
    await link.start()

    # Then it is told the link is not up (and the link keeps trying behind the scenes)
    assert not await link.wait_connected(0.2)
    assert not link.connected
    await eventually(lambda: len(gateway.handshakes) >= 2)


async def test_an_unreachable_api_is_retried(bridge: Bridge) -> None:
    # Given nothing listening yet on the address (the port of a server that just went away)
    fake = FakeApiGateway()
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
        port = server.sockets[0].getsockname()[1]
    link = AgentLink(f"ws://127.0.0.1:{port}/prod", **link_options(bridge))
    try:
        await link.start()
        assert not await link.wait_connected(0.2)

        # When the API comes up on that port
        async with serve(fake.handler, "127.0.0.1", port, process_request=fake.process_request):
            # Then the link gets there by itself
            assert await link.wait_connected(10)
            await eventually(lambda: bridge.nudges == 1)
    finally:
        await link.close()


async def test_garbage_frames_are_ignored(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)

    # When frames it cannot use arrive (API Gateway's own error body among them)
    for garbage in (
        "not json",
        "[1, 2, 3]",
        '"a string"',
        {"type": "mystery"},
        {"message": "Internal server error", "connectionId": "abc=", "requestId": "r1"},
        {"type": "heartbeat"},
        {"type": "abort", "conversationId": 42},
    ):
        await gateway.push(garbage)
    await gateway.push({"type": "nudge"})

    # Then the link stays up and later commands still work (a bad conversationId means "whatever runs")
    await eventually(lambda: bridge.nudges == 2)
    assert bridge.aborts == [None]
    assert link.connected
    assert len(gateway.connections) == 1


async def test_malformed_frames_are_ignored_on_the_same_connection(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)
    await eventually(lambda: bridge.nudges == 1)

    # When frames arrive nested thousands of levels deep, with a lone surrogate, or with ids and
    # reasons that are not what the control plane sends
    for bad in (
        '{"type":"nudge","x":' + "[" * 5000 + "]" * 5000 + "}",
        '{"type":"nudge","x":"\\ud800"}',
        '{"type":"nudge","x":NaN}',
        {"type": "abort", "conversationId": "conv-7\n"},
        {"type": "abort", "conversationId": "x" * 5000},
        {"type": "shutdown", "reason": "idle\x00\x1b[2J"},
    ):
        await gateway.push(bad)
    await gateway.push({"type": "nudge"})

    # Then the link stays on the same connection and the good command after them is obeyed
    await eventually(lambda: bridge.nudges == 2 and len(bridge.shutdowns) == 1)
    assert bridge.aborts == [None, None]
    assert bridge.shutdowns == [""]
    assert link.connected and len(gateway.connections) == 1


async def test_a_failing_callback_does_not_break_the_link(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a bridge whose drain raises
    bridge.fail_nudges = True
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)

    # When a nudge fails, then other commands are still delivered on the same connection
    await gateway.push({"type": "nudge"})
    await gateway.push({"type": "shutdown", "reason": "stop requested"})
    await eventually(lambda: bridge.shutdowns == ["stop requested"])
    assert bridge.nudges == 2
    assert len(gateway.connections) == 1


async def test_an_unauthorized_answer_makes_the_link_dial_again(
    gateway: FakeApiGateway, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link whose Connections row has disappeared
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)

    # When the API answers a frame with "unauthorized"
    await gateway.push(
        {"type": "error", "code": "unauthorized", "error": "This connection is not signed in."}
    )

    # Then the link reconnects, so the API knows it again
    await eventually(lambda: len(gateway.connections) == 2 and link.connected)


async def test_close_stops_the_link(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a connected link
    link = make_link()
    await link.start()
    assert await link.wait_connected(10)

    # When the bridge closes it
    await link.close()

    # Then the API sees the connection closed and the link reports itself down
    await eventually(lambda: gateway.connections[0].close_code is not None)
    assert not link.connected
    assert not await link.wait_connected(0)
    await link.close()  # closing twice is harmless


async def test_a_callback_may_close_the_link(
    gateway: FakeApiGateway, bridge: Bridge, make_link: Callable[..., AgentLink]
) -> None:
    # Given a shutdown handler that closes the link as its last step (as the bridge's does)
    done = asyncio.Event()
    holder: list[AgentLink] = []

    async def on_shutdown(reason: str) -> None:
        await holder[0].close()
        done.set()

    link = make_link(on_shutdown=on_shutdown)
    holder.append(link)
    await link.start()
    assert await link.wait_connected(10)

    # When the shutdown command arrives
    await gateway.push({"type": "shutdown", "reason": "idle"})

    # Then the handler runs to its end and the connection is closed
    async with asyncio.timeout(10):
        await done.wait()
    assert not link.connected
    await eventually(lambda: gateway.connections[0].close_code is not None)


async def test_the_agent_token_never_reaches_the_logs(
    gateway: FakeApiGateway,
    make_link: Callable[..., AgentLink],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # Given every logger at DEBUG (websockets logs raw handshake headers at that level)
    caplog.set_level(logging.DEBUG)
    gateway.refuse_next = 1
    link = make_link()

    # When the link is refused, connects, heartbeats and closes
    await link.start()
    assert await link.wait_connected(10)
    await eventually(lambda: len(gateway.heartbeats()) >= 1)
    await link.close()

    # Then the token is nowhere in what the bridge logged (the fake API's own server logs are not ours)
    out, err = capfd.readouterr()
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]
    assert any(r.name == "serverless-openclaw" for r in caplog.records)  # the bridge did log
    assert not any(TOKEN in message for message in ours)
    assert TOKEN not in out + err


def test_a_malformed_url_fails_at_start_up(bridge: Bridge) -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        AgentLink("https://not-a-websocket.example", **link_options(bridge))
