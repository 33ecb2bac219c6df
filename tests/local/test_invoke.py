"""`make invoke` against a running stack's AWS: the demo user's data, the result alone on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.aws import DEMO_USERNAME, EmbeddedAws, User
from local.resolve import Resolver
from local.state_directory import StateDirectory
from tests.local.conftest import forget_everything

REPO = Path(__file__).resolve().parents[2]


@dataclass
class RunningAws:
    """The AWS part of a running stack (moto with the template's resources and the demo user), published
    in endpoints.json as `make dev` publishes it."""

    aws: EmbeddedAws
    user: User
    state: StateDirectory

    def put(self, table: str, item: dict[str, Any]) -> None:
        self.aws.client("dynamodb").put_item(TableName=f"local-{table}", Item=item)

    def invoke(self, function: str, event: str) -> subprocess.CompletedProcess[str]:
        """`make invoke F=… E=…`, as a person runs it."""
        command = [sys.executable, "-m", "local", "invoke", function, "-e", f"events/{event}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return subprocess.run(
            [*command, "--state-dir", str(self.state.path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def running(template: dict[str, Any], tmp_path: Path) -> Iterator[RunningAws]:
    forget_everything()
    aws = EmbeddedAws(tmp_path, 0)
    aws.start()
    state = StateDirectory(tmp_path)
    try:
        aws.create_resources(Resolver(template, "local"), template)
        user = aws.ensure_user(DEMO_USERNAME)
        assert state.take()
        nowhere = "http://127.0.0.1:9"  # no function these tests invoke calls the APIs or ECS
        state.write_endpoints(
            {
                "stackName": "local",
                "parameters": {},
                "userPoolId": aws.user_pool_id,
                "userPoolClientId": aws.client_id,
                "awsEndpoint": aws.url,
                "ecsEndpoint": nowhere,
                "managementEndpoint": f"{nowhere}/prod",
                "httpApiUrl": nowhere,
                "username": user.username,
                "userId": user.sub,
                "pid": os.getpid(),
            }
        )
        yield RunningAws(aws=aws, user=user, state=state)
    finally:
        state.release()
        aws.stop()
        forget_everything()


def agent_running_for(running: RunningAws) -> None:
    """The demo user's agent is up and has just sent a heartbeat."""
    now = time.time()
    running.put(
        "TaskState",
        {
            "PK": {"S": f"USER#{running.user.sub}"},
            "status": {"S": "Running"},
            "version": {"N": "3"},
            "taskArn": {"S": "arn:aws:ecs:us-east-1:123456789012:task/local-Cluster/0123456789abcdef"},
            "startedAt": {"N": str(now - 60)},
            "heartbeatAt": {"N": str(now)},
            "lastActivity": {"N": str(now)},
        },
    )


def test_an_http_api_sample_reports_the_demo_users_agent_with_the_result_alone_on_stdout(
    running: RunningAws,
) -> None:
    # Given the demo user's agent is running
    agent_running_for(running)

    # When the status sample (a made-up user's) is invoked against the stack
    done = running.invoke("HttpApiFunction", "http_api_get_status.json")

    # Then the status is the demo user's; stdout is the result alone, and stderr says whom it acted as,
    # without Powertools' warning about an invocation that recorded no business metric
    assert done.returncode == 0, done.stderr
    assert json.loads(json.loads(done.stdout)["body"])["status"] == "running"
    assert f"invoke: acting as {DEMO_USERNAME} (user {running.user.sub})" in done.stderr
    assert "No application metrics" not in done.stderr


def test_a_websocket_sample_arrives_on_the_demo_users_open_connection(running: RunningAws) -> None:
    # Given the demo user has the web chat open, and their agent is running
    running.put(
        "Connections",
        {
            "PK": {"S": "CONN#BrowserConn0A="},
            "userId": {"S": running.user.sub},
            "kind": {"S": "client"},
            "connectedAt": {"N": str(time.time())},
        },
    )
    agent_running_for(running)

    # When the getStatus sample (sent on a made-up connection) is invoked
    done = running.invoke("WsMessageFunction", "ws_message_get_status.json")

    # Then it is answered on the demo user's connection, as to a signed-in user: their agent's status
    assert done.returncode == 0, done.stderr
    assert json.loads(json.loads(done.stdout)["body"]) == {"type": "status", "status": "running"}
    assert "through their open web chat connection BrowserConn0A=" in done.stderr
