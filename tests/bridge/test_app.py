"""The bridge wired with fakes through its start-up phases and its stop, its HTTP surface, and its start-up
failure path (no OpenClaw needed)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.endpoints import create_app
from bridge.metrics import BridgeMetrics
from bridge.openclaw_config import build_config
from bridge.state_sync import BackupReport, RestoreReport
from bridge.telegram_delivery import ChannelDelivery
from bridge.wiring import production_bridge
from serverless_openclaw.config import ConfigError
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.store.inbox import Settled
from tests.contract.conftest import free_port
from tests.fakes import Clock

TASK = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/t1"
PHASES = [
    "metadata",
    "secrets",
    "restore",
    "config",
    "compile-cache",
    "gateway",
    "handshake",
    "workspace",
    "dial-out",
]


def _config(tmp_path: Path, **overrides: str) -> BridgeConfig:
    env = {
        **{k: v for k, v in os.environ.items() if k.endswith("_TABLE")},
        "USER_ID": "user-a",
        "DATA_BUCKET": "data",
        "WEBSOCKET_URL": "ws://127.0.0.1:9/prod",
        "WEBSOCKET_MANAGEMENT_ENDPOINT": "http://127.0.0.1:9/prod",
        # Nothing listens there: the start fails in its first phase, as with a broken task.
        "ECS_CONTAINER_METADATA_URI_V4": f"http://127.0.0.1:{free_port()}/v4",
        "MODEL_PROVIDER": "offline",
        "MODEL_BASE_URL": "http://127.0.0.1:9/v1",
        "STATE_ROOT": str(tmp_path),
        # Nothing is stored under the token's parameter: replies stay web-only.
        "TELEGRAM_API_BASE": "http://127.0.0.1:9",
        "TELEGRAM_BOT_TOKEN_PARAMETER": "/test/secrets/telegram-bot-token",
        **overrides,
    }
    return BridgeConfig.from_env(env)


# ------------------------------------------------------------- in-memory stand-ins for every collaborator


@dataclass
class TaskStateRow:
    """The user's TaskState row, as the bridge moves it."""

    status: Status = Status.STARTING
    agent_token_hash: str | None = None

    started_at: float | None = None
    recent_starts: tuple[dict[str, float], ...] = ()
    phases: list[str] = field(default_factory=list)
    settled_with: dict[str, Any] = field(default_factory=dict)

    def get(self, user_id: str, *, consistent: bool = True) -> TaskState:
        # Started by a message, never by a `warm` frame: the warm idle rule leaves it alone.
        return TaskState(
            user_id=user_id,
            status=self.status,
            task_arn=TASK,
            started_at=self.started_at,
            recent_starts=self.recent_starts,
        )

    def enter_start_phase(self, user_id: str, task_arn: str, phase: str, now: float) -> bool:
        self.phases.append(phase)
        return True

    def register_agent_token(self, user_id: str, task_arn: str, token_hash: str) -> bool:
        self.agent_token_hash = token_hash
        return True

    def settle_own(self, user_id: str, task_arn: str, to: Status, now: float, **changes: Any) -> bool:
        self.status = to
        self.settled_with = changes
        return True

    def heartbeat(self, user_id: str, task_arn: str, busy: bool, now: float) -> bool:
        return True

    def stop_unused_warm(self, user_id: str, task_arn: str, seen: TaskState, now: float) -> bool:
        raise AssertionError("a task started by a message never stops as unused")

    def names_task(self, user_id: str, task_arn: str) -> bool:
        return True

    def names_task_check(self, user_id: str, task_arn: str) -> dict[str, Any]:
        return {}


@dataclass
class Inbox:
    """Queued messages; `complete` removes one for good, `settle` also stores its reply."""

    queued: list[InboxItem]
    completed: list[str] = field(default_factory=list)

    def claim_next(self, user_id: str, claimer: str, now: float, lease: int) -> InboxItem | None:
        return self.queued.pop(0) if self.queued else None

    def complete(self, item: InboxItem, claimer: str) -> bool:
        self.completed.append(item.message_id)
        return True

    def renew(self, item: InboxItem, claimer: str, now: float, lease: int) -> bool:
        return True

    def release(self, item: InboxItem, claimer: str) -> bool:
        return True

    def settle(
        self, item: InboxItem, claimer: str, now: float, *, reply: list[Any], guards: Any, failed: Any
    ) -> Settled:
        for write in reply:
            write["into"].append(("assistant", write["content"]))
        self.completed.append(item.message_id)
        return Settled.DONE

    def pending(self, user_id: str, now: float) -> list[InboxItem]:
        return list(self.queued)


@dataclass
class Conversations:
    stored: list[tuple[str, str]] = field(default_factory=list)

    def add_message(
        self, user_id: str, conversation_id: str, role: str, text: str, *rest: Any, **kw: Any
    ) -> None:
        self.stored.append((role, text))

    def reply_writes(
        self, user_id: str, conversation_id: str, message_id: str, text: str, *rest: Any
    ) -> list[Any]:
        return [{"into": self.stored, "content": text}]


@dataclass
class Settings:
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, user_id: str, key: str) -> Any:
        return self.values.get(key)


@dataclass
class WebTabs:
    """What the user's web tabs were sent: status frames, and each reply's final text."""

    frames: list[Mapping[str, Any]] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)

    def open(self, item: InboxItem, message_id: str) -> WebTabs.Stream:
        return WebTabs.Stream(self)

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        self.frames.append(frame)

    @dataclass
    class Stream:
        tabs: WebTabs

        async def chunk(self, text: str) -> None:
            pass

        async def end(self, full_text: str) -> None:
            self.tabs.replies.append(full_text)

        async def fail(self, code: str, message: str) -> None:
            self.tabs.replies.append(f"failed: {code}")


@dataclass
class Bucket:
    """The user's copy of OpenClaw's files: what was restored, how many backups were taken."""

    restored: list[set[str]] = field(default_factory=list)
    backups: int = 0

    def restore(self, only: set[str] | None = None) -> RestoreReport:
        self.restored.append(set(only or ()))
        return RestoreReport(files=1, bytes=10, seconds=0.0)

    def backup(self) -> BackupReport:
        self.backups += 1
        return BackupReport(uploaded=1, deleted=0, unchanged=0, bytes=10, requests=2, seconds=0.0)


@dataclass
class CloudWatch:
    datapoints: list[dict[str, Any]] = field(default_factory=list)

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        self.datapoints += MetricData


class GatewayChild:
    """The OpenClaw child process: records how it was started."""

    def __init__(
        self, command: Sequence[str], env: Mapping[str, str], *, cwd: Path, **listeners: Any
    ) -> None:
        self.command, self.env, self.cwd = command, env, cwd
        self.running = False
        self.pid = 4242
        self.restarts = 0

    async def start(self) -> None:
        self.running = True

    async def wait_until_ready(self, port: int, timeout: float) -> None:
        assert self.running

    async def stop(self, timeout: float = 15) -> int:
        self.running = False
        return 0


class GatewayOperator:
    """The bridge's connection to OpenClaw; every run echoes the message."""

    def __init__(self, url: str, token: str, *, run_timeout: float, **listeners: Any) -> None:
        self.connected = False

    async def start(self) -> None:
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def run(self, session_key: str, message: str, **options: Any) -> Reply:
        return Reply(state="final", text=f"echo: {message}")

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        return False


@dataclass
class Reply:
    state: str
    text: str
    error_message: str | None = None
    error_kind: str | None = None


class ControlPlaneLink:
    """The agent link; up as soon as it is started."""

    def __init__(self, url: str, **options: Any) -> None:
        self.options = options
        self.connected = False

    async def start(self) -> None:
        self.connected = True

    async def wait_connected(self, timeout: float) -> bool:
        return self.connected

    async def close(self) -> None:
        self.connected = False


def _quiet_bridge(cfg: BridgeConfig, row: TaskStateRow, **parts: Any) -> Bridge:
    """A bridge of in-memory fakes with nothing queued, any of its `parts` given instead."""

    async def find_task_arn() -> str:
        return TASK

    defaults: dict[str, Any] = {
        "inbox": Inbox([]),
        "conversations": Conversations(),
        "settings": Settings(),
        "delivery": ChannelDelivery(WebTabs()),
        "sync": Bucket(),
        "metrics": BridgeMetrics(CloudWatch(), "Test"),
        "find_task_arn": find_task_arn,
        "model_keys": lambda provider: {"ANTHROPIC_API_KEY": "key"},
        "telegram_bot": lambda: None,
        "make_gateway": GatewayChild,
        "make_gateway_client": GatewayOperator,
        "make_link": ControlPlaneLink,
        "on_exit": lambda: None,
        "clock": Clock(),
    }
    return Bridge(cfg, task_state=row, **(defaults | parts))


async def test_a_bridge_wired_with_fakes_boots_phase_by_phase_answers_what_waited_and_stops(
    tmp_path: Path,
) -> None:
    # Given a bridge whose every collaborator is an in-memory fake, and a message waiting in the Inbox,
    # with OpenClaw installed beside the compile cache the image build prepared
    entry = tmp_path / "opt" / "openclaw" / "node_modules" / "openclaw" / "openclaw.mjs"
    prepared_entry = tmp_path / "opt" / "openclaw" / "compile-cache" / "v24.22.3-x64-964aae3f-0" / "entry"
    prepared_entry.parent.mkdir(parents=True)
    prepared_entry.write_bytes(b"compiled")
    cfg = _config(tmp_path, MODEL_PROVIDER="anthropic", MODEL_BASE_URL="", OPENCLAW_ENTRY=str(entry))
    row, tabs, bucket, cloudwatch = TaskStateRow(), WebTabs(), Bucket(), CloudWatch()
    children: list[GatewayChild] = []

    def start_child(command: Sequence[str], env: Mapping[str, str], **options: Any) -> GatewayChild:
        children.append(GatewayChild(command, env, **options))
        return children[-1]

    waiting = InboxItem(cfg.user_id, "m1", "hello", "web", "c1", created_at=1.0)
    inbox, conversations = Inbox([waiting]), Conversations()
    exits: list[str] = []

    async def find_task_arn() -> str:
        return TASK

    bridge = Bridge(
        cfg,
        task_state=row,
        inbox=inbox,
        conversations=conversations,
        settings=Settings(),
        delivery=ChannelDelivery(tabs),
        sync=bucket,
        metrics=BridgeMetrics(cloudwatch, "Test"),
        find_task_arn=find_task_arn,
        model_keys=lambda provider: {"ANTHROPIC_API_KEY": f"key-for-{provider}"},
        telegram_bot=lambda: None,
        make_gateway=start_child,
        make_gateway_client=GatewayOperator,
        make_link=ControlPlaneLink,
        on_exit=lambda: exits.append("exit"),
        clock=Clock(),
    )

    # When it starts
    await bridge.start()

    # Then it went through every phase in order and reported each one as a metric
    assert bridge.failure is None and list(bridge.phases.durations) == [*PHASES, "first-drain"]
    phases_sent = [
        {d["Name"]: d["Value"] for d in point["Dimensions"]}.get("Phase", point["MetricName"])
        for point in cloudwatch.datapoints
        if point["MetricName"] != "BackupCompleted"
    ]
    assert phases_sent == [*PHASES, "first-drain", "StartupTotal"]
    # And OpenClaw's state came down before the workspace, and OpenClaw got the key the secrets phase read
    assert bucket.restored == [{"state"}, {"workspace"}]
    [openclaw] = children
    assert openclaw.env["ANTHROPIC_API_KEY"] == "key-for-anthropic"
    assert (tmp_path / "home" / ".openclaw" / "openclaw.json").exists()
    # And OpenClaw's temporary folder (where it keeps Node's compile cache) started with the prepared cache
    assert openclaw.env["TMPDIR"] == str(tmp_path / "tmp")
    seeded = tmp_path / "tmp" / "node-compile-cache" / "v24.22.3-x64-964aae3f-0" / "entry"
    assert seeded.read_bytes() == b"compiled"
    # And the row is Running with the link's token registered, and the tabs were told each step in order
    assert row.status is Status.RUNNING and row.agent_token_hash
    statuses = [f for f in tabs.frames if f["type"] == "status"]
    assert [(f["status"], f.get("phase")) for f in statuses] == [
        ("starting", "restoring"),
        ("starting", "booting"),
        ("running", None),
    ]
    # And each phase was recorded in TaskState (what getStatus and a new tab are shown)
    assert row.phases == ["restoring", "booting"]
    # And, with no history of this user's starts, the ETAs split the stack's default, never going up
    etas = [f["etaSeconds"] for f in statuses if f["status"] == "starting"]
    assert etas == sorted(etas, reverse=True) and etas[0] <= cfg.start_eta_seconds
    assert {f["usualSeconds"] for f in statuses if f["status"] == "starting"} == {cfg.start_eta_seconds}
    # And once Running, the tabs were told the agent took the waiting message (they show it typing)
    assert [f for f in tabs.frames if f["type"] == "thinking"] == [
        {"type": "thinking", "conversationId": "c1", "messageId": "m1-reply", "replyTo": "m1"}
    ]
    # And this start's phases became the user's history, for the next start's ETA
    [recorded] = row.settled_with["set_"]["recentStarts"]
    assert set(recorded) == {"provisioning", "restoring", "booting"}
    assert row.settled_with["remove"] == ("startPhase", "phaseAt")
    # And the message that waited was answered, stored and taken off the Inbox; the bridge is healthy
    assert tabs.replies == ["echo: hello"] and conversations.stored == [("assistant", "echo: hello")]
    assert inbox.completed == ["m1"] and bridge.health() == (True, "ok")
    # And the files of its run were backed up before the answer was final, not seconds after it
    assert bucket.backups == 1
    assert bridge.status()["answered"] == 1 and bridge.status()["phase"] == "ready"

    # When it stops
    await bridge.stop("test over")

    # Then OpenClaw is stopped, the files are backed up, the row is Idle and the tabs are told so
    assert not openclaw.running and bucket.backups == 2 and row.status is Status.IDLE
    assert tabs.frames[-1] == {"type": "status", "status": "idle"} and exits == []


async def test_a_bridge_told_it_was_replaced_claims_nothing_more_and_leaves_s3_to_its_replacement(
    tmp_path: Path,
) -> None:
    # Given a bridge that came up with nothing to answer
    cfg = _config(tmp_path, MODEL_PROVIDER="anthropic", MODEL_BASE_URL="")
    bucket, inbox, exits = Bucket(), Inbox([]), list[str]()
    bridge = _quiet_bridge(
        cfg, TaskStateRow(), inbox=inbox, sync=bucket, on_exit=lambda: exits.append("exit")
    )
    await bridge.start()
    assert bridge.ready and bridge.link is not None

    # When the control plane answers a heartbeat saying TaskState names another task, and a message
    # arrives meanwhile
    await bridge.link.options["on_superseded"]()  # type: ignore[attr-defined]
    inbox.queued.append(InboxItem(cfg.user_id, "m2", "late", "web", "c1", created_at=2.0))
    assert bridge.loop is not None and await bridge.loop.drain() == 0
    await bridge.stop("superseded")

    # Then it shut down without claiming the message and without a backup that would overwrite the
    # replacement's manifest
    assert exits == ["exit"] and [i.message_id for i in inbox.queued] == ["m2"]
    assert bucket.backups == 0


def test_health_reports_why_it_is_not_healthy_and_shutdown_is_loopback_only(tmp_path: Path) -> None:
    # Given a bridge whose start fails (no metadata endpoint)
    exits: list[str] = []
    app = create_app(production_bridge(_config(tmp_path), on_exit=lambda: exits.append("exit")))

    with TestClient(app) as client:
        # When its boot has given up
        for _ in range(200):
            body = client.get("/health").json()
            if body["reason"].startswith("start failed"):
                break
            time.sleep(0.05)
        # Then /health is 503 with the reason, /status names the phase, and it asked to exit
        response = client.get("/health")
        assert response.status_code == 503 and "start failed" in response.json()["reason"]
        status = client.get("/status").json()
        assert status["phase"] == "stopping" and "metadata" in status["failure"].lower()
        assert exits == ["exit"]
        # And POST /shutdown from anywhere but loopback is refused (TestClient is not loopback)
        assert client.post("/shutdown").status_code == 403
        assert client.get("/shutdown").status_code == 405


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"USER_ID": ""}, "USER_ID"),
        ({"MODEL_PROVIDER": "cats"}, "MODEL_PROVIDER"),
        ({"MODEL_BASE_URL": ""}, "MODEL_BASE_URL"),
        ({"RUN_TIMEOUT_SECONDS": "30"}, "RUN_TIMEOUT_SECONDS"),
        ({"OPENCLAW_PORT": "x"}, "OPENCLAW_PORT"),
        ({"TELEGRAM_API_BASE": ""}, "TELEGRAM_API_BASE"),
        ({"TELEGRAM_BOT_TOKEN_PARAMETER": " "}, "TELEGRAM_BOT_TOKEN_PARAMETER"),
    ],
)
def test_configuration_fails_fast_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError, match=missing):
        _config(tmp_path, **overrides)


def test_a_task_configured_for_bedrock_refuses_to_start_saying_why(tmp_path: Path) -> None:
    # Given / When a task whose MODEL_PROVIDER is Bedrock is configured
    with pytest.raises(ConfigError) as refused:
        _config(tmp_path, MODEL_PROVIDER="bedrock", MODEL_BASE_URL="")

    # Then the error names the variable and says why Bedrock cannot run here
    message = str(refused.value)
    assert message.startswith("MODEL_PROVIDER=bedrock: Amazon Bedrock is not available")
    assert "@openclaw/amazon-bedrock-provider" in message and "not published on npm" in message


def test_the_model_choice_names_only_keys_that_exist(aws: dict[str, str], tmp_path: Path) -> None:
    # Given a keyless openai-compatible endpoint (no key stored in SSM)
    keyless = production_bridge(
        _config(tmp_path, MODEL_PROVIDER="openai-compatible", MODEL_BASE_URL="https://llm.internal/v1")
    )
    choice, keys = keyless._model_choice()
    written = build_config(choice, port=1, workspace=tmp_path, log_file=tmp_path / "log")
    # Then the config refers to no variable that would stay unset
    assert keys == {} and choice.api_key_env is None
    assert "${" not in json.dumps(written["models"])


class RehearsingOperator(GatewayOperator):
    """The connection to OpenClaw, which also puts a session on the model it is asked to (sessions.patch)."""

    made: list[RehearsingOperator] = []

    def __init__(self, url: str, token: str, *, run_timeout: float, **listeners: Any) -> None:
        super().__init__(url, token, run_timeout=run_timeout)
        self.models: dict[str, str] = {}
        self.runs: list[tuple[str, str]] = []
        RehearsingOperator.made.append(self)

    async def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        self.models[params["key"]] = params["model"]
        provider, model = params["model"].split("/")
        return {"ok": True, "resolved": {"modelProvider": provider, "model": model}}

    async def run(self, session_key: str, message: str, **options: Any) -> Reply:
        self.runs.append((session_key, self.models.get(session_key, "the user's model")))
        return await super().run(session_key, message, **options)


async def test_a_bridge_woken_without_a_message_rehearses_the_first_turn_on_the_stand_in_before_running(
    tmp_path: Path,
) -> None:
    # Given a bridge started with nothing in the Inbox (woken by a `warm` frame)
    cfg = _config(tmp_path, MODEL_PROVIDER="anthropic", MODEL_BASE_URL="")
    row = TaskStateRow()
    bridge = _quiet_bridge(cfg, row, make_gateway_client=RehearsingOperator)

    # When it starts
    await bridge.start()

    # Then, before it said "running", one turn ran in the rehearsal's session on the stand-in model the
    # bridge serves, which openclaw.json names beside the user's model
    assert list(bridge.phases.durations) == [*PHASES, "rehearsal", "first-drain"]
    [operator] = RehearsingOperator.made
    assert operator.runs == [("agent:main:bridge:rehearsal", "bridge-stand-in/stand-in")]
    written = json.loads((tmp_path / "home" / ".openclaw" / "openclaw.json").read_text())
    assert set(written["models"]["providers"]) == {"anthropic", "bridge-stand-in"}
    assert bridge.stand_in is not None and written["models"]["providers"]["bridge-stand-in"]["baseUrl"] == (
        bridge.stand_in.url
    )
    assert written["agents"]["defaults"]["model"]["primary"].startswith("anthropic/")
    assert bridge.status()["rehearsal"] == "done" and row.status is Status.RUNNING

    # When it stops
    await bridge.stop("test over")

    # Then the stand-in model no longer listens
    with pytest.raises(OSError):
        urllib.request.urlopen(bridge.stand_in.url + "/models", timeout=2)
