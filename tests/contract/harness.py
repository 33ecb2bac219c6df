"""Stand-ins around a bridge process: AWS (moto's server), API Gateway (agent WebSocket + @connections)
and the ECS task metadata endpoint — all on loopback, started and stopped by the tests."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
import websockets
from moto.server import ThreadedMotoServer
from websockets.asyncio.server import Server, ServerConnection

from local.template import create_tables, load_template
from serverless_openclaw.config import Tables
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.store.task_state import TaskStateStore
from tests.contract.conftest import ENTRY, NODE, REPO, free_port

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

TABLE_PREFIX = "contract"


class MotoServer:
    """moto's server on a free loopback port, with the template's tables and a versioned data bucket."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.bucket = "contract-data"
        self.tables: dict[str, str] = {}

    def start(self) -> None:
        """Start it and create what the stack would."""
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.server.start()
        # moto's threaded server keeps its state in the process's backends, shared by every server a worker
        # starts: a module's fixture set up again later in the same worker (pytest -n hands out tests one
        # at a time, longest first) would find the previous one's tables. Each server starts empty.
        urllib.request.urlopen(
            urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=30
        )
        self.tables = create_tables(self.client("dynamodb"), load_template(), TABLE_PREFIX)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})

    def stop(self) -> None:
        """Stop it."""
        self.server.stop()

    @overload
    def client(self, service: Literal["dynamodb"]) -> DynamoDBClient: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    def client(self, service: Literal["dynamodb", "s3"]) -> BaseClient:
        """A boto3 client talking to this server."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


class _ManagementHandler(BaseHTTPRequestHandler):
    server: ManagementServer

    def do_POST(self) -> None:
        connection_id = self.path.rsplit("/@connections/", 1)[-1]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if connection_id in self.server.gone:
            self.send_response(410)
            self.end_headers()
            return
        with self.server.lock:
            self.server.frames[connection_id].append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


class ManagementServer(ThreadingHTTPServer):
    """The `@connections` API the bridge posts replies to; records every frame per connection."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ManagementHandler)
        self.frames: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.gone: set[str] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """What WEBSOCKET_MANAGEMENT_ENDPOINT points at."""
        return f"http://127.0.0.1:{self.server_address[1]}/prod"

    def received(self, connection_id: str, type_: str | None = None) -> list[dict[str, Any]]:
        """Frames posted to one connection (of one type)."""
        with self.lock:
            return [f for f in self.frames[connection_id] if type_ is None or f.get("type") == type_]


@dataclass
class AgentSocket:
    """The bridge's dial-out WebSocket, as API Gateway would see it."""

    headers: dict[str, str] = field(default_factory=dict)
    connections: list[ServerConnection] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    server: Server | None = None

    async def start(self) -> str:
        """Listen on a free port; returns the wss-equivalent URL for WEBSOCKET_URL."""

        async def handler(ws: ServerConnection) -> None:
            self.headers = {k.lower(): v for k, v in ws.request.headers.raw_items()} if ws.request else {}
            self.connections.append(ws)
            self.connected.set()
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("action") == "heartbeat":
                    self.heartbeats.append(frame)
                    await ws.send(json.dumps({"type": "heartbeat", "accepted": True}))

        self.server = await websockets.serve(handler, "127.0.0.1", 0)
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/prod"

    async def send(self, frame: dict[str, Any]) -> None:
        """Post a control-plane frame (nudge, abort, shutdown) to the bridge."""
        await self.connected.wait()
        await self.connections[-1].send(json.dumps(frame))

    async def stop(self) -> None:
        """Close everything."""
        if self.server:
            self.server.close()
            await self.server.wait_closed()


class _MetadataHandler(BaseHTTPRequestHandler):
    server: MetadataServer

    def do_GET(self) -> None:
        body = json.dumps({"TaskARN": self.server.task_arn, "Family": "contract-bridge"}).encode()
        self.send_response(200 if self.path.endswith("/task") else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class MetadataServer(ThreadingHTTPServer):
    """ECS task metadata endpoint v4 (just `/task`)."""

    def __init__(self, task_arn: str) -> None:
        super().__init__(("127.0.0.1", 0), _MetadataHandler)
        self.task_arn = task_arn
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        """What ECS_CONTAINER_METADATA_URI_V4 points at."""
        return f"http://127.0.0.1:{self.server_address[1]}/v4/contract"


def start_task(tables: Tables, user_id: str, task_arn: str) -> None:
    """What ws_message does before RunTask: the row Starting, naming the task."""
    store = TaskStateStore(tables.task_state)
    current = store.get(user_id)
    if current.status is not Status.IDLE:
        current = store.transition(current, Status.IDLE, time.time()) or store.get(user_id)
    starting = store.transition(current, Status.STARTING, time.time(), set_={"startedAt": time.time()})
    assert starting is not None and store.record_launch(starting, task_arn, Capacity.SPOT)


def bridge_environment(
    *,
    moto: MotoServer,
    user_id: str,
    websocket_url: str,
    management_endpoint: str,
    metadata_uri: str,
    model_url: str,
    state_root: Path,
    **extra: str,
) -> dict[str, str]:
    """What ECS (task definition + RunTask override) would give the bridge, pointed at the stand-ins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "PYTHONPATH": os.pathsep.join([str(REPO / "bridge"), str(REPO / "layers" / "shared")]),
            "USER_ID": user_id,
            "DATA_BUCKET": moto.bucket,
            "WEBSOCKET_URL": websocket_url,
            "WEBSOCKET_MANAGEMENT_ENDPOINT": management_endpoint,
            "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
            "SECRETS_PREFIX": "/contract/secrets",
            # No bot token is stored under this parameter, so this Bot API is never called: web-only replies.
            "TELEGRAM_API_BASE": "http://127.0.0.1:9",
            "TELEGRAM_BOT_TOKEN_PARAMETER": "/contract/secrets/telegram-bot-token",
            "MODEL_PROVIDER": "offline",
            "MODEL_BASE_URL": model_url,
            "STATE_ROOT": str(state_root),
            "OPENCLAW_NODE": str(NODE),
            "OPENCLAW_ENTRY": str(ENTRY),
            "OPENCLAW_PORT": str(free_port()),
            "BRIDGE_PORT": str(free_port()),
            "HEARTBEAT_INTERVAL_SECONDS": "2",
            "BACKUP_DEBOUNCE_SECONDS": "0.2",
            "POWERTOOLS_SERVICE_NAME": "serverless-openclaw-bridge",
            "POWERTOOLS_METRICS_NAMESPACE": "ServerlessOpenClaw",
            "LOG_LEVEL": "INFO",
            **moto.tables,
            **extra,
        }
    )
    return env


async def start_bridge(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """`python -m bridge`, the container's entry point, as a process whose output goes to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", env=env, cwd=str(REPO), stdout=out, stderr=out
        )
