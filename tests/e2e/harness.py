"""Drive the real local stack (`python -m local up`) the way a person and their browser would.

`LocalStackProcess` starts the stack in its own process on free loopback ports with a state directory of
the test's own, waits for `endpoints.json` and stops it with SIGINT (graceful: agents take their final
backup). `ChatClient` is a browser-less WebSocket client that logs in against the local Cognito and
records every frame it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.conftest import TEST_ENV

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 120.0
STOP_TIMEOUT = 180.0
REPLY_TIMEOUT = 180.0

T = TypeVar("T")


def user_environment() -> dict[str, str]:
    """This process's environment as a person's shell would have it: without the settings the tests set
    for in-process functions (tests/conftest.py's TEST_ENV: Powertools, table names), AWS credentials or
    model keys, so the stack must find everything it needs itself, as `make dev` does."""
    env = {k: v for k, v in os.environ.items() if k not in TEST_ENV and not k.startswith("AWS_")}
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("OPENAI_API_KEY", None)
    return env


class LocalStackProcess:
    """`python -m local up` in a subprocess, with its own state directory and free ports."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.state_dir = state_dir
        self.args = list(args)
        self.process: subprocess.Popen[bytes] | None = None
        self.output = state_dir.parent / f"{state_dir.name}-console.log"
        self.endpoints: dict[str, Any] = {}

    def start(self) -> LocalStackProcess:
        """Start and wait until it has written endpoints.json."""
        endpoints = self.state_dir / "endpoints.json"
        with contextlib.suppress(FileNotFoundError):
            endpoints.unlink()
        env = user_environment()
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local",
                    "up",
                    "--state-dir",
                    str(self.state_dir),
                    "--port-base",
                    "0",
                    "--model",
                    "offline",
                    *self.args,
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, as `make dev` in a terminal has: `crash` kills that group.
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not endpoints.exists():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the local stack exited with {self.process.returncode}:\n{self.console()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"the local stack did not start in {START_TIMEOUT} s:\n{self.console()}")
            time.sleep(0.2)
        self.endpoints = json.loads(endpoints.read_text())
        return self

    def stop(self) -> int:
        """SIGINT, like Ctrl-C, and wait for the graceful stop; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"the local stack did not stop in {STOP_TIMEOUT} s:\n{self.console()}"
            ) from None

    def crash(self) -> None:
        """SIGKILL the stack's whole process group at once, as a machine that dies would: no final
        snapshot, no graceful stop of anything in it."""
        if self.process is None or self.process.poll() is not None:
            raise AssertionError(f"the local stack is not running:\n{self.console()}")
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def console(self) -> str:
        """What the stack printed (the banner and its one-line events), for failure messages."""
        try:
            return self.output.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------------------------ AWS side

    def client(self, service: str) -> Any:
        """A boto3 client for the stack's moto."""
        return boto3.client(
            service,
            endpoint_url=self.endpoints["awsEndpoint"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def table(self, env_var: str) -> str:
        """A table name by its variable (TASK_STATE_TABLE, …)."""
        return str(self.endpoints["tables"][env_var])

    def task_state(self, user_id: str) -> dict[str, Any]:
        """The user's TaskState row as plain values ({} when there is none)."""
        item = (
            self.client("dynamodb")
            .get_item(
                TableName=self.table("TASK_STATE_TABLE"),
                Key={"PK": {"S": f"USER#{user_id}"}},
                ConsistentRead=True,
            )
            .get("Item", {})
        )
        return {k: next(iter(v.values())) for k, v in item.items()}

    def inbox(self, user_id: str) -> list[dict[str, Any]]:
        """The user's Inbox items."""
        items = self.client("dynamodb").query(
            TableName=self.table("INBOX_TABLE"),
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}},
            ConsistentRead=True,
        )["Items"]
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]

    def workspace_file(self, user_id: str, name: str) -> bytes | None:
        """A file of the agent's workspace as backed up in S3 (None when absent)."""
        s3 = self.client("s3")
        try:
            obj = s3.get_object(Bucket=self.endpoints["dataBucket"], Key=f"users/{user_id}/workspace/{name}")
        except s3.exceptions.NoSuchKey:
            return None
        return bytes(obj["Body"].read())

    def create_user(self, username: str, password: str) -> str:
        """Another Cognito user (as scripts/create-user would); its sub."""
        cognito = self.client("cognito-idp")
        pool = self.endpoints["userPoolId"]
        cognito.admin_create_user(
            UserPoolId=pool,
            Username=username,
            UserAttributes=[
                {"Name": "email", "Value": username},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
        cognito.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
        attributes = cognito.admin_get_user(UserPoolId=pool, Username=username)["UserAttributes"]
        return str(next(a["Value"] for a in attributes if a["Name"] == "sub"))

    def login(self, username: str | None = None, password: str | None = None) -> str:
        """An ID token straight from moto (USER_PASSWORD_AUTH; the web chat itself signs in with SRP)."""
        result = self.client("cognito-idp").initiate_auth(
            ClientId=self.endpoints["userPoolClientId"],
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={
                "USERNAME": username or self.endpoints["username"],
                "PASSWORD": password or self.endpoints["password"],
            },
        )
        return str(result["AuthenticationResult"]["IdToken"])

    # ------------------------------------------------------------------------------------ ECS side

    def tasks(self) -> list[dict[str, Any]]:
        """The ECS stand-in's tasks (with PIDs)."""
        # A loaded machine (two OpenClaw boots beside the stack) can keep it busy beyond httpx's 5 s default.
        response = httpx.get(f"{self.endpoints['ecsEndpoint']}/_local/tasks", timeout=30)
        tasks: list[dict[str, Any]] = response.json()["tasks"]
        return tasks

    def running_tasks(self) -> list[dict[str, Any]]:
        """Tasks whose bridge process is alive."""
        return [t for t in self.tasks() if t["pid"] is not None]

    def kill_openclaw(self, task: dict[str, Any]) -> int:
        """SIGKILL the OpenClaw gateway a task's bridge runs as its child (as the kernel's OOM killer would),
        leaving the bridge alone; the PID it had."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            # Fields after the parenthesised command name: state, ppid, …
            if stat[stat.rfind(")") + 2 :].split()[1] == str(task["pid"]) and "openclaw" in command:
                os.kill(int(entry.name), signal.SIGKILL)
                return int(entry.name)
        raise AssertionError(f"no OpenClaw child of the bridge {task['pid']} is running")

    def fail_next_starts(self, count: int) -> None:
        """Make the next `count` tasks start a bridge that cannot start."""
        response = httpx.post(f"{self.endpoints['ecsEndpoint']}/_local/faults", json={"failStarts": count})
        response.raise_for_status()

    # ------------------------------------------------------------------------------------ Telegram side

    def telegram_say(self, telegram_user: int, text: str) -> dict[str, Any]:
        """A Telegram user writes to the bot (the simulator posts the update to the webhook)."""
        response = httpx.post(
            f"{self.endpoints['telegramUrl']}/_local/updates",
            json={"userId": telegram_user, "text": text},
            timeout=60,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def telegram_redeliver(self, update_id: int, secret: str | None = None) -> int:
        """Telegram sends an update again (after a timeout, say); the webhook's HTTP status."""
        response = httpx.post(
            f"{self.endpoints['telegramUrl']}/_local/updates/{update_id}/redeliver",
            json={"secret": secret} if secret is not None else {},
            timeout=60,
        )
        response.raise_for_status()
        return int(response.json()["webhookStatus"])

    def telegram_chat(self, telegram_user: int) -> list[dict[str, Any]]:
        """The bot's messages in the user's chat, as the user sees them now."""
        response = httpx.get(f"{self.endpoints['telegramUrl']}/_local/chats/{telegram_user}", timeout=10)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    def telegram_rate_limit(self, calls: int, retry_after: int) -> None:
        """The next `calls` Bot API calls get 429 with `retry_after`."""
        httpx.post(
            f"{self.endpoints['telegramUrl']}/_local/faults",
            json={"rateLimitedCalls": calls, "retryAfter": retry_after},
            timeout=10,
        ).raise_for_status()

    def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        """A call to the HTTP API as the web chat makes it."""
        return httpx.request(
            method,
            f"{self.endpoints['httpApiUrl']}{path}",
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=30,
            **kwargs,
        )


@dataclass
class ChatClient:
    """One browser tab: a WebSocket connection that records every frame it receives."""

    url: str
    token: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChatClient:
        self.ws = await websockets.connect(f"{self.url}?token={self.token}", max_size=2**21)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.frames.append(json.loads(raw))

    async def send_message(self, text: str, conversation_id: str | None = None) -> str:
        """sendMessage; returns the clientMessageId."""
        assert self.ws is not None
        client_message_id = f"e2e-{uuid.uuid4().hex[:12]}"
        frame: dict[str, Any] = {
            "action": "sendMessage",
            "message": text,
            "clientMessageId": client_message_id,
        }
        if conversation_id:
            frame["conversationId"] = conversation_id
        await self.ws.send(json.dumps(frame))
        return client_message_id

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        """Frames of one type, in order."""
        return [f for f in self.frames if f.get("type") == type_]

    def ack_for(self, client_message_id: str) -> dict[str, Any] | None:
        """The ack of one sent message."""
        return next((f for f in self.of_type("ack") if f.get("clientMessageId") == client_message_id), None)

    def reply_frames(self, message_id: str, type_: str) -> list[dict[str, Any]]:
        """Frames of one type that answer one user message (by its server-side messageId)."""
        return [f for f in self.of_type(type_) if f.get("replyTo") == message_id]

    async def ack(self, client_message_id: str) -> dict[str, Any]:
        """The ack of one sent message."""
        return await until(
            lambda: self.ack_for(client_message_id), 30, f"the ack of {client_message_id}", self
        )

    async def reply_to(self, client_message_id: str, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        """The stream_end answering one sent message."""
        message_id = (await self.ack(client_message_id))["messageId"]
        ends = await until(
            lambda: self.reply_frames(message_id, "stream_end"),
            timeout,
            f"the reply to {client_message_id}",
            self,
        )
        return ends[0]


async def until(check: Callable[[], T | None], timeout: float, what: str, context: object = None) -> T:
    """Poll `check` until it returns something truthy; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        # In a thread: checks may do I/O (DynamoDB, S3, /proc), and the event loop must keep reading frames.
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            detail = ""
            if isinstance(context, ChatClient):
                detail = "\nframes: " + json.dumps(context.frames[-15:])[:3000]
            elif isinstance(context, LocalStackProcess):
                detail = "\nconsole:\n" + context.console()
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")
        await asyncio.sleep(0.2)
