"""The real pinned OpenClaw gateway, started once per test session against the offline model.

`start_gateway(tmp_path, model_url)` is the reusable part (restore tests start their own gateway on a
prepared home). Every async contract test runs in the session's event loop: the gateway's supervisor and
output drains live there, and a loop that sat idle while a test ran would let the child's pipes fill up.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Origin

from bridge import openclaw_config
from bridge.gateway_process import GatewayProcess
from bridge.openclaw_config import ModelChoice, build_config, gateway_environment, write_config
from local.offline_model import OfflineModelServer, serve
from local.ports import PortReservation, reserve_port
from local.runtime import runtime

REPO = Path(__file__).resolve().parents[2]
NODE = runtime().node
ENTRY = runtime().entry
BOOT_TIMEOUT = 240.0  # first boot on a slow CI box; a healthy one takes 8-15 s
MAX_FRAME = 32 * 1024 * 1024


class FatalHandshake(Exception):
    """The gateway refused the connect request for a reason retrying will not fix."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.error = error


@dataclass
class RunningGateway:
    """A started gateway: where it listens, its token, its home and workspace, and the supervised process."""

    url: str
    port: int
    token: str
    home: Path
    workspace: Path
    process: GatewayProcess
    model_url: str
    boot_seconds: float

    @property
    def state_dir(self) -> Path:
        """OpenClaw's state directory ($OPENCLAW_HOME/.openclaw)."""
        return self.home / ".openclaw"

    async def stop(self, timeout: float = 30) -> int | None:
        """Stop the gateway (SIGTERM, then SIGKILL) and return its exit status."""
        return await self.process.stop(timeout)


def require_runtime() -> None:
    """Fail (never skip) with the command that installs the runtime when it is missing."""
    missing = [str(p.relative_to(REPO)) for p in (NODE, ENTRY) if not p.exists()]
    if missing:
        pytest.fail(
            f"the pinned OpenClaw runtime is missing ({', '.join(missing)}): run `make openclaw` first",
            pytrace=False,
        )


_HELD_PORTS: list[PortReservation] = []


def free_port() -> int:
    """A loopback port that nothing listens on and no other test process will be given (local/ports.py):
    held until this process ends, since OpenClaw binds its port only after a boot of many seconds."""
    reservation = reserve_port()
    _HELD_PORTS.append(reservation)
    return reservation.port


def gateway_command(port: int, entry: Path = ENTRY) -> list[str]:
    """The bridge's command for the pinned gateway (or another copy of it, at `entry`), on loopback."""
    return openclaw_config.gateway_command(str(NODE), str(entry), port)


def connect_params(token: str, caps: list[str] | None = None) -> dict[str, Any]:
    """The protocol v4 connect request of a trusted local backend client."""
    return {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "gateway-client",
            "version": "0.1.0",
            "platform": "linux",
            "mode": "backend",
            "displayName": "contract-tests",
        },
        "role": "operator",
        "scopes": ["operator.read", "operator.write"],
        "caps": caps if caps is not None else ["tool-events"],
        "auth": {"token": token},
        "locale": "en-US",
        "userAgent": "serverless-openclaw-contract/0.1",
    }


async def request(ws: ClientConnection, method: str, params: dict[str, Any]) -> str:
    """Send one request frame; returns its id."""
    request_id = str(uuid.uuid4())
    await ws.send(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
    return request_id


async def response(ws: ClientConnection, request_id: str) -> dict[str, Any]:
    """The res frame for request_id (events received meanwhile are dropped)."""
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "res" and frame.get("id") == request_id:
            return dict(frame)


async def open_operator(
    url: str, token: str, caps: list[str] | None = None, *, origin: str | None = None
) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect and handshake once; returns (socket, hello-ok payload) or raises on a refusal.

    Raises FatalHandshake for errors retrying cannot fix, ConnectionError for "try again" conditions.
    """
    # websockets sends no Origin header unless asked: the gateway refuses browser origins.
    ws = await websockets.connect(
        url, max_size=MAX_FRAME, open_timeout=30, origin=Origin(origin) if origin else None
    )
    try:
        challenge = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if challenge.get("event") != "connect.challenge":
            raise ConnectionError(f"expected connect.challenge, got {challenge!r}")
        request_id = await request(ws, "connect", connect_params(token, caps))
        answer = await asyncio.wait_for(response(ws, request_id), 30)
    except BaseException:
        await ws.close()
        raise
    if answer.get("ok"):
        return ws, dict(answer["payload"])
    await ws.close()
    error = dict(answer.get("error") or {})
    if error.get("retryable") or error.get("code") == "UNAVAILABLE":
        raise ConnectionError(f"gateway not ready: {error.get('message')}")
    raise FatalHandshake(error)


async def wait_for_hello(
    gateway: GatewayProcess,
    url: str,
    token: str,
    timeout: float = BOOT_TIMEOUT,
    *,
    allow_restarts: bool = False,
) -> dict[str, Any]:
    """Retry the handshake while the gateway is starting (refused, close 1013, UNAVAILABLE) until hello-ok.

    Unless allow_restarts, a gateway that exits meanwhile fails at once instead of after the timeout.
    """
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not allow_restarts and gateway.last_exit_code is not None:
            raise RuntimeError(f"the gateway exited with status {gateway.last_exit_code} while starting")
        try:
            ws, hello = await open_operator(url, token)
        except (
            OSError,
            ConnectionError,
            websockets.ConnectionClosed,
            websockets.InvalidHandshake,
            TimeoutError,
        ) as error:
            last = error
            await asyncio.sleep(0.25)
            continue
        await ws.close()
        return hello
    raise TimeoutError(f"no hello-ok from {url} within {timeout} s (last: {last!r})")


async def start_gateway(
    tmp_path: Path,
    model_url: str,
    *,
    home: Path | None = None,
    port: int | None = None,
    backoff_initial: float = 1.0,
    entry: Path = ENTRY,
    providers: dict[str, Any] | None = None,
) -> RunningGateway:
    """Write our headless config for the offline model and start the real gateway; returns once hello-ok.

    Pass `home` to start on an existing OpenClaw home (a restored state dir): its openclaw.json is
    rewritten for this port and model, everything else is used as found. Pass `entry` to run another
    copy of the pinned OpenClaw (a trimmed one) with the same Node. `providers` are added to the config's
    models.providers, beside the offline model.
    """
    require_runtime()
    home = home or tmp_path / "home"
    port = port or free_port()
    workspace = home / ".openclaw" / "workspace"
    for folder in (home / ".openclaw", workspace, tmp_path / "cache", tmp_path / "logs"):
        folder.mkdir(parents=True, exist_ok=True)
    choice = ModelChoice("offline", "offline-model", base_url=model_url)
    config = build_config(choice, port=port, workspace=workspace, log_file=tmp_path / "logs" / "openclaw.log")
    config["models"]["providers"].update(providers or {})
    write_config(home / ".openclaw" / "openclaw.json", config)
    token = secrets.token_urlsafe(32)
    env = gateway_environment(os.environ, home=home, cache_dir=tmp_path / "cache", token=token, secrets={})
    process = GatewayProcess(gateway_command(port, entry), env, cwd=home, backoff_initial=backoff_initial)
    url = f"ws://127.0.0.1:{port}"
    started = time.monotonic()
    await process.start()
    try:
        await wait_for_hello(process, url, token)
    except BaseException:
        await process.stop()
        raise
    boot = time.monotonic() - started
    return RunningGateway(url, port, token, home, workspace, process, model_url, boot)


@dataclass
class ChatRun:
    """Everything one chat.send produced: its run id, the chat deltas, agent events and the terminal event."""

    run_id: str
    deltas: list[dict[str, Any]]
    agent_events: list[dict[str, Any]]
    end: dict[str, Any]

    @property
    def state(self) -> str:
        """final, error or aborted."""
        return str(self.end["state"])

    @property
    def text(self) -> str:
        """The final message's text (empty when the run was merged into another)."""
        message = self.end.get("message") or {}
        return "".join(
            part.get("text", "") for part in message.get("content") or [] if part.get("type") == "text"
        )

    @property
    def streamed(self) -> str:
        """The text assembled from the deltas alone, as a client streaming it would show it."""
        text = ""
        for delta in self.deltas:
            text = delta["deltaText"] if delta.get("replace") else text + delta.get("deltaText", "")
        return text

    def tool_events(self, name: str) -> list[dict[str, Any]]:
        """The agent "tool" stream events for one tool."""
        return [e for e in self.agent_events if e.get("stream") == "tool" and e["data"].get("name") == name]


class _RunCollector:
    """One chat.send's events; those arriving before its ack wait until the ack names the run."""

    def __init__(self, session_key: str, request_id: str) -> None:
        self.session_key = session_key
        self.request_id = request_id
        self.run_id: str | None = None
        self.deltas: list[dict[str, Any]] = []
        self.agent_events: list[dict[str, Any]] = []
        self.early: list[dict[str, Any]] = []

    def take(self, frame: dict[str, Any]) -> ChatRun | None:
        """Account for one frame; the finished run once its terminal event has arrived."""
        if frame.get("type") == "res" and frame.get("id") == self.request_id:
            return self._acknowledged(frame)
        if frame.get("type") != "event" or frame.get("event") not in ("chat", "agent"):
            return None
        payload = dict(frame["payload"], _event=frame["event"])
        if self.run_id is None:
            self.early.append(payload)
            return None
        return self._record(payload)

    def _acknowledged(self, frame: dict[str, Any]) -> ChatRun | None:
        if not frame.get("ok"):
            raise AssertionError(f"chat.send refused: {frame.get('error')}")
        self.run_id = str(frame["payload"]["runId"])
        pending, self.early = self.early, []
        for payload in pending:
            if (done := self._record(payload)) is not None:
                return done
        return None

    def _record(self, payload: dict[str, Any]) -> ChatRun | None:
        if payload.get("sessionKey") != self.session_key or payload.get("runId") != self.run_id:
            return None
        if payload["_event"] == "agent":
            self.agent_events.append(payload)
        elif payload.get("state") == "delta":
            self.deltas.append(payload)
        elif payload.get("state") in ("final", "error", "aborted"):
            return ChatRun(str(self.run_id), self.deltas, self.agent_events, payload)
        return None


async def chat(ws: ClientConnection, session_key: str, message: str, timeout: float = 180) -> ChatRun:
    """chat.send one message and collect its run's events until final, error or aborted."""
    idempotency_key = str(uuid.uuid4())
    params = {"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key}
    collector = _RunCollector(session_key, await request(ws, "chat.send", params))

    async def collect() -> ChatRun:
        while (done := collector.take(json.loads(await ws.recv()))) is None:
            pass
        return done

    return await asyncio.wait_for(collect(), timeout)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async contract test in the session loop, where the shared gateway is supervised."""
    marker = pytest.mark.asyncio(loop_scope="session")
    here = Path(__file__).parent
    for item in items:
        if pytest_asyncio.is_async_test(item) and here in Path(str(item.fspath)).parents:
            item.add_marker(marker, append=False)


@pytest.fixture(scope="session")
def offline_model() -> Iterator[OfflineModelServer]:
    """The offline model on a free loopback port, for the whole session."""
    server, thread = serve(0)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(
    offline_model: OfflineModelServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    """The real gateway, started once per session with our headless config and the offline model."""
    running = await start_gateway(tmp_path_factory.mktemp("openclaw"), offline_model.url)
    yield running
    await running.stop()
