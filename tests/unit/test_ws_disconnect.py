"""`$disconnect`: the connection is forgotten; an agent link is cleared only if it is still current."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw.agent_credentials import hash_agent_token
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState
from tests.conftest import load_event

USER = "0c8e7a52-3f21-4a7e-9d5b-2f6f1e9b7c44"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/task1"


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_disconnect.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


def disconnect_event(connection_id: str) -> dict[str, Any]:
    event = load_event("ws_disconnect.json")
    event["requestContext"]["connectionId"] = connection_id
    return event


def attached_agent(cp: ControlPlane, connection_id: str) -> None:
    """A running task whose bridge is attached on `connection_id` (what a successful $connect leaves)."""
    state = cp.task_state.transition(
        TaskState(user_id=USER),
        Status.RUNNING,
        cp.clock(),
        set_={"taskArn": TASK_ARN, "agentTokenHash": hash_agent_token("t"), "heartbeatAt": cp.clock()},
    )
    assert state is not None
    cp.connections.put(Connection(connection_id, USER, "agent", cp.clock(), task_arn=TASK_ARN))
    assert cp.task_state.attach_agent(USER, TASK_ARN, connection_id, cp.clock())


def test_client_disconnect_removes_its_connection(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a user with two open tabs
    cp.connections.put(Connection("tabOne=", USER, "client", cp.clock()))
    cp.connections.put(Connection("tabTwo=", USER, "client", cp.clock()))

    # When one tab closes
    response = app.lambda_handler(disconnect_event("tabOne="), lambda_context)

    # Then replies now go only to the other tab
    assert response == {"statusCode": 200}
    assert cp.connections.get("tabOne=") is None
    assert [c.connection_id for c in cp.connections.for_user(USER)] == ["tabTwo="]


def test_sample_disconnect_event_is_handled(app: ModuleType, cp: ControlPlane, lambda_context: Any) -> None:
    # Given the connection named in the sample event is open
    event = load_event("ws_disconnect.json")
    connection_id = event["requestContext"]["connectionId"]
    cp.connections.put(Connection(connection_id, USER, "client", cp.clock()))

    # When the sample event arrives unchanged
    response = app.lambda_handler(event, lambda_context)

    # Then it is removed
    assert response == {"statusCode": 200}
    assert cp.connections.get(connection_id) is None


def test_unknown_connection_disconnect_is_fine(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a connection that was never recorded (refused at $connect, or already expired)
    cp.connections.put(Connection("someoneElse=", USER, "client", cp.clock()))

    # When its disconnect arrives
    response = app.lambda_handler(disconnect_event("neverSeen="), lambda_context)

    # Then nothing fails and nothing else is touched
    assert response == {"statusCode": 200}
    assert cp.connections.get("someoneElse=") is not None


def test_disconnect_event_without_connection_id_is_ignored(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a malformed event
    event = load_event("ws_disconnect.json")
    del event["requestContext"]["connectionId"]

    # When / Then
    assert app.lambda_handler(event, lambda_context) == {"statusCode": 200}


def test_agent_disconnect_clears_the_current_agent_connection(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given the bridge attached on one connection
    attached_agent(cp, "agentOne=")

    # When that connection closes
    response = app.lambda_handler(disconnect_event("agentOne="), lambda_context)

    # Then the row is gone and TaskState no longer names it (messages wait until the bridge is back)
    assert response == {"statusCode": 200}
    assert cp.connections.get("agentOne=") is None
    after = cp.task_state.get(USER)
    assert after.agent_connection_id is None
    assert (after.status, after.task_arn) == (Status.RUNNING, TASK_ARN)


def test_late_disconnect_of_an_old_agent_connection_keeps_the_newer_one(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given the bridge reconnected: the old connection still exists, TaskState names the new one
    attached_agent(cp, "agentOld=")
    cp.connections.put(Connection("agentNew=", USER, "agent", cp.clock(), task_arn=TASK_ARN))
    assert cp.task_state.attach_agent(USER, TASK_ARN, "agentNew=", cp.clock())

    # When the old connection's disconnect arrives late
    response = app.lambda_handler(disconnect_event("agentOld="), lambda_context)

    # Then only the old row goes; the live agent connection is kept
    assert response == {"statusCode": 200}
    assert cp.connections.get("agentOld=") is None
    assert cp.connections.get("agentNew=") is not None
    assert cp.task_state.get(USER).agent_connection_id == "agentNew="


def test_client_disconnect_never_touches_the_agent_link(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given an attached agent and a browser tab of the same user
    attached_agent(cp, "agentOne=")
    cp.connections.put(Connection("tabOne=", USER, "client", cp.clock()))

    # When the tab closes
    app.lambda_handler(disconnect_event("tabOne="), lambda_context)

    # Then the agent stays reachable
    assert cp.task_state.get(USER).agent_connection_id == "agentOne="
