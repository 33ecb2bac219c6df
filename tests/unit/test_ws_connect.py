"""`$connect`: who gets a WebSocket connection, and that every refusal writes nothing."""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from serverless_openclaw.agent_credentials import hash_agent_token
from serverless_openclaw.auth import MAX_TOKEN_LENGTH, JwtVerifier
from serverless_openclaw.aws import clients
from serverless_openclaw.connect import ConnectRequest, accept_connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Status, TaskState
from serverless_openclaw.observability import logger
from serverless_openclaw.store.task_state import TaskStateStore
from tests.conftest import load_event
from tests.unit.conftest_auth import (
    USER_SUB,
    SigningKey,
    StaticKeys,
    access_claims,
    alg_none_token,
    auth_config,
    hs256_with_public_key,
    id_claims,
    make_key,
    serve_jwks,
    sign,
)

AGENT_USER = "0c8e7a52-3f21-4a7e-9d5b-2f6f1e9b7c44"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/task1"
OTHER_TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/task9"
AGENT_TOKEN = "Zq3v0b8Jm1kXcR7tYpLw2nHs5dGa9eUf4iOy6TxBqVk"


@pytest.fixture
def app(cp: ControlPlane, pool_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.ws_connect.app")
    monkeypatch.setattr(module, "plane", cp)
    monkeypatch.setattr(module, "verifier", JwtVerifier(auth_config(), jwks_client=StaticKeys([pool_key])))
    return module


@pytest.fixture
def info_logs() -> Iterator[None]:
    logger.setLevel("INFO")
    yield
    logger.setLevel("WARNING")


def client_event(token: str | None) -> dict[str, Any]:
    event = load_event("ws_connect_client.json")
    if token is None:
        event["queryStringParameters"] = None
        event["multiValueQueryStringParameters"] = None
    else:
        event["queryStringParameters"] = {"token": token}
        event["multiValueQueryStringParameters"] = {"token": [token]}
    return event


def agent_event(**headers: str | None) -> dict[str, Any]:
    """The sample agent event with the agent headers set (or, with None, removed) by lower-case name."""
    event = load_event("ws_connect_agent.json")
    values = {"x-agent-user": AGENT_USER, "x-agent-task-arn": TASK_ARN, "x-agent-token": AGENT_TOKEN}
    values.update({name.replace("_", "-"): value for name, value in headers.items()})
    for section in ("headers", "multiValueHeaders"):
        event[section] = {k: v for k, v in event[section].items() if not k.lower().startswith("x-agent-")}
    for name, value in values.items():
        if value is not None:
            event["headers"][name] = value
            event["multiValueHeaders"][name] = [value]
    return event


def connection_rows(cp: ControlPlane) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = clients.client("dynamodb").scan(TableName=cp.cfg.tables.connections)[
        "Items"
    ]
    return items


def task_state_rows(cp: ControlPlane) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = clients.client("dynamodb").scan(TableName=cp.cfg.tables.task_state)["Items"]
    return items


def starting_task(cp: ControlPlane, *, token_hash: str | None = None, task_arn: str = TASK_ARN) -> TaskState:
    """The user's row as the launcher and then the bridge leave it: Starting, task ARN, token hash."""
    state = cp.task_state.transition(
        TaskState(user_id=AGENT_USER),
        Status.STARTING,
        cp.clock(),
        set_={
            "taskArn": task_arn,
            "capacity": "FARGATE_SPOT",
            "startedAt": cp.clock(),
            "agentTokenHash": token_hash or hash_agent_token(AGENT_TOKEN),
        },
    )
    assert state is not None
    return state


# --- client connections --------------------------------------------------------------------------


def test_valid_id_token_opens_a_client_connection(
    app: ModuleType, cp: ControlPlane, pool_key: SigningKey, lambda_context: Any
) -> None:
    # Given a browser presenting its Cognito ID token
    event = client_event(sign(pool_key, id_claims()))

    # When it connects
    response = app.lambda_handler(event, lambda_context)

    # Then it is let in and recorded as that user's client connection
    assert response == {"statusCode": 200}
    connection = cp.connections.get(event["requestContext"]["connectionId"])
    assert connection is not None
    assert (connection.user_id, connection.kind, connection.connected_at) == (USER_SUB, "client", cp.clock())
    assert [c.connection_id for c in cp.connections.for_user(USER_SUB)] == [connection.connection_id]


BAD_TOKENS = [
    "alg_none",
    "hs256_key_confusion",
    "unknown_kid",
    "known_kid_wrong_key",
    "expired",
    "wrong_issuer",
    "wrong_audience",
    "access_token",
    "garbage",
    "garbage_three_parts",
    "empty",
    "missing",
    "oversized",
]


def _bad_token(case: str, pool_key: SigningKey, attacker_key: SigningKey) -> str | None:
    return {
        "alg_none": lambda: alg_none_token(pool_key),
        "hs256_key_confusion": lambda: hs256_with_public_key(pool_key),
        "unknown_kid": lambda: sign(attacker_key, id_claims()),
        "known_kid_wrong_key": lambda: sign(attacker_key, id_claims(), kid=pool_key.kid),
        "expired": lambda: sign(pool_key, id_claims(iat=1_700_000_000, exp=1_700_003_600)),
        "wrong_issuer": lambda: sign(pool_key, id_claims(iss="https://evil.example.com/us-east-1_TestPool")),
        "wrong_audience": lambda: sign(pool_key, id_claims(aud="another-app-client")),
        "access_token": lambda: sign(pool_key, access_claims()),
        "garbage": lambda: "not-a-jwt",
        "garbage_three_parts": lambda: "eyJhbGciOiJSUzI1NiIsImtpZCI6InBvb2wta2V5LTEifQ.!!!.???",
        "empty": lambda: "",
        "missing": lambda: None,
        "oversized": lambda: sign(pool_key, id_claims(padding="x" * MAX_TOKEN_LENGTH)),
    }[case]()


@pytest.mark.parametrize("case", BAD_TOKENS)
def test_bad_client_token_gets_401_and_writes_nothing(
    case: str,
    app: ModuleType,
    cp: ControlPlane,
    pool_key: SigningKey,
    attacker_key: SigningKey,
    lambda_context: Any,
) -> None:
    # Given a connect request whose token must not be accepted
    event = client_event(_bad_token(case, pool_key, attacker_key))

    # When it connects
    response = app.lambda_handler(event, lambda_context)

    # Then the upgrade is refused and no connection exists
    assert response == {"statusCode": 401, "body": "Unauthorized"}
    assert connection_rows(cp) == []


def test_client_connect_through_a_real_jwks_endpoint(
    app: ModuleType,
    cp: ControlPlane,
    pool_key: SigningKey,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the handler's verifier using PyJWKClient against the pool's published keys
    with serve_jwks([pool_key]) as jwks:
        monkeypatch.setattr(app, "verifier", JwtVerifier(auth_config(jwks.url)))

        # When a browser with a valid token connects, and one with a forged token
        ok = app.lambda_handler(client_event(sign(pool_key, id_claims())), lambda_context)
        forged_event = client_event(sign(make_key("rogue"), id_claims(sub="mallory"), kid=pool_key.kid))
        forged_event["requestContext"]["connectionId"] = "forgedConnId="
        forged = app.lambda_handler(forged_event, lambda_context)

    # Then only the genuine user is connected
    assert (ok["statusCode"], forged["statusCode"]) == (200, 401)
    assert [c.user_id for c in cp.connections.for_user(USER_SUB)] == [USER_SUB]
    assert cp.connections.get("forgedConnId=") is None


def test_jwks_outage_refuses_the_connection(
    app: ModuleType,
    cp: ControlPlane,
    pool_key: SigningKey,
    lambda_context: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a JWKS endpoint that fails
    with serve_jwks([pool_key]) as jwks:
        jwks.failing = True
        monkeypatch.setattr(app, "verifier", JwtVerifier(auth_config(jwks.url)))

        # When a browser with a valid token connects
        response = app.lambda_handler(client_event(sign(pool_key, id_claims())), lambda_context)

    # Then it is refused (the browser retries later) and nothing is written
    assert response["statusCode"] == 401
    assert connection_rows(cp) == []


def test_refusal_logs_a_reason_but_never_the_token(
    app: ModuleType,
    pool_key: SigningKey,
    lambda_context: Any,
    info_logs: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an expired token
    token = sign(pool_key, id_claims(iat=1_700_000_000, exp=1_700_003_600))

    # When it is refused
    app.lambda_handler(client_event(token), lambda_context)

    # Then the log says why, and no part of the token appears in any record
    records = [vars(r) for r in caplog.records]
    assert any(r.get("reason") == "token expired" for r in records)
    logged = json.dumps(records, default=str)
    assert token.split(".")[1] not in logged
    assert token.split(".")[2] not in logged


def test_request_with_client_and_agent_credentials_is_refused(
    app: ModuleType, cp: ControlPlane, pool_key: SigningKey, lambda_context: Any
) -> None:
    # Given a valid ID token and a valid agent credential on the same request
    starting_task(cp)
    event = agent_event()
    event["queryStringParameters"] = {"token": sign(pool_key, id_claims())}
    before = task_state_rows(cp)

    # When it connects
    response = app.lambda_handler(event, lambda_context)

    # Then it is neither a client nor an agent: refused, nothing written
    assert response["statusCode"] == 401
    assert connection_rows(cp) == []
    assert task_state_rows(cp) == before


def test_connect_event_without_connection_id_is_refused(
    app: ModuleType, cp: ControlPlane, pool_key: SigningKey, lambda_context: Any
) -> None:
    # Given a malformed event (no connection id) with a valid token
    event = client_event(sign(pool_key, id_claims()))
    del event["requestContext"]["connectionId"]

    # When / Then
    assert app.lambda_handler(event, lambda_context)["statusCode"] == 401
    assert connection_rows(cp) == []


# --- agent connections ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Status.STARTING, Status.RUNNING])
def test_bridge_with_its_token_opens_the_agent_connection(
    status: Status, app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given the user's task is starting (or already running) and its bridge stored its token hash
    state = starting_task(cp)
    if status is Status.RUNNING:
        assert cp.task_state.transition(state, Status.RUNNING, cp.clock()) is not None
    event = agent_event()

    # When the bridge dials in
    response = app.lambda_handler(event, lambda_context)

    # Then it is let in, recorded as the agent connection of that task, and TaskState points at it
    assert response == {"statusCode": 200}
    connection_id = event["requestContext"]["connectionId"]
    connection = cp.connections.get(connection_id)
    assert connection is not None
    assert (connection.user_id, connection.kind, connection.task_arn) == (AGENT_USER, "agent", TASK_ARN)
    after = cp.task_state.get(AGENT_USER)
    assert after.agent_connection_id == connection_id
    assert after.heartbeat_at == cp.clock()
    # An agent connection is not a client: replies to the user are not pushed to it
    assert cp.connections.for_user(AGENT_USER) == []


def test_agent_header_names_match_case_insensitively(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a bridge whose HTTP stack sends header names in another case
    starting_task(cp)
    event = agent_event(x_agent_user=None, x_agent_task_arn=None, x_agent_token=None)
    event["headers"].update(
        {"X-AGENT-USER": AGENT_USER, "X-Agent-Task-ARN": TASK_ARN, "x-Agent-Token": AGENT_TOKEN}
    )
    event["multiValueHeaders"].update(
        {"X-AGENT-USER": [AGENT_USER], "X-Agent-Task-ARN": [TASK_ARN], "x-Agent-Token": [AGENT_TOKEN]}
    )

    # When / Then
    assert app.lambda_handler(event, lambda_context)["statusCode"] == 200
    assert cp.task_state.get(AGENT_USER).agent_connection_id == event["requestContext"]["connectionId"]


@pytest.mark.parametrize(
    "case",
    [
        "wrong_token",
        "hash_presented_as_token",
        "different_task_arn",
        "missing_user",
        "missing_task_arn",
        "missing_token",
        "empty_token",
        "conflicting_token_values",
        "oversized_token",
    ],
)
def test_bad_agent_credentials_get_401_and_change_nothing(
    case: str, app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given the user's task is starting with its bridge's token hash stored
    starting_task(cp)
    before = task_state_rows(cp)
    event = {
        "wrong_token": lambda: agent_event(x_agent_token="guessed-token"),
        "hash_presented_as_token": lambda: agent_event(x_agent_token=hash_agent_token(AGENT_TOKEN)),
        "different_task_arn": lambda: agent_event(x_agent_task_arn=OTHER_TASK_ARN),
        "missing_user": lambda: agent_event(x_agent_user=None),
        "missing_task_arn": lambda: agent_event(x_agent_task_arn=None),
        "missing_token": lambda: agent_event(x_agent_token=None),
        "empty_token": lambda: agent_event(x_agent_token=""),
        "conflicting_token_values": lambda: _with_second_token(agent_event(), "guessed-token"),
        "oversized_token": lambda: agent_event(x_agent_token=AGENT_TOKEN + "x" * 5000),
    }[case]()

    # When that request dials in
    response = app.lambda_handler(event, lambda_context)

    # Then it is refused, no connection is recorded and TaskState is untouched
    assert response == {"statusCode": 401, "body": "Unauthorized"}
    assert connection_rows(cp) == []
    assert task_state_rows(cp) == before


def _with_second_token(event: dict[str, Any], other: str) -> dict[str, Any]:
    event["multiValueHeaders"]["x-agent-token"] = [AGENT_TOKEN, other]
    return event


def test_right_token_for_another_task_is_refused(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given the user's row now references a newer task, and the old task's bridge still holds a token
    # that the new bridge happened to reuse (so only the task ARN differs)
    starting_task(cp, task_arn=OTHER_TASK_ARN)
    before = task_state_rows(cp)

    # When the old task's bridge dials in
    response = app.lambda_handler(agent_event(), lambda_context)

    # Then it cannot attach to the new task's state
    assert response["statusCode"] == 401
    assert connection_rows(cp) == []
    assert task_state_rows(cp) == before


@pytest.mark.parametrize("status", [Status.IDLE, Status.STOPPING])
def test_agent_of_a_task_that_is_not_live_is_refused(
    status: Status, app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a row that still names the task and its token hash but is no longer Starting/Running
    state = starting_task(cp)
    assert cp.task_state.transition(state, status, cp.clock()) is not None
    before = task_state_rows(cp)

    # When its bridge dials in
    response = app.lambda_handler(agent_event(), lambda_context)

    # Then it is refused and nothing changes
    assert response["statusCode"] == 401
    assert connection_rows(cp) == []
    assert task_state_rows(cp) == before


def test_agent_for_an_unknown_user_is_refused_and_creates_no_row(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given no TaskState at all
    # When a "bridge" dials in for a user that never had a task
    response = app.lambda_handler(agent_event(x_agent_user="nobody"), lambda_context)

    # Then it is refused, and neither table gains a row
    assert response["statusCode"] == 401
    assert connection_rows(cp) == []
    assert task_state_rows(cp) == []


def test_agent_rolled_back_when_task_state_changes_while_connecting(cp: ControlPlane) -> None:
    # Given a task that is being stopped at the very moment its bridge is checked
    starting_task(cp)

    class StoppedMeanwhile(TaskStateStore):
        def get(self, user_id: str, *, consistent: bool = True) -> TaskState:
            seen = super().get(user_id, consistent=consistent)
            assert super().transition(seen, Status.STOPPING, cp.clock()) is not None
            return seen

    racing = copy.copy(cp)
    racing.task_state = StoppedMeanwhile(cp.cfg.tables.task_state)
    verifier = JwtVerifier(auth_config(), jwks_client=StaticKeys([]))

    # When the bridge's connect is decided on the stale read
    allowed = accept_connection(racing, verifier, ConnectRequest.from_event(agent_event()))

    # Then it is refused, its connection row is rolled back and TaskState names no agent
    assert allowed is False
    assert connection_rows(cp) == []
    assert cp.task_state.get(AGENT_USER).agent_connection_id is None


def test_reconnecting_bridge_replaces_its_agent_connection(
    app: ModuleType, cp: ControlPlane, lambda_context: Any
) -> None:
    # Given a running bridge already attached on one connection
    starting_task(cp)
    first = agent_event()
    assert app.lambda_handler(first, lambda_context)["statusCode"] == 200

    # When it reconnects on a new connection (e.g. after API Gateway's 2-hour limit)
    second = agent_event()
    second["requestContext"]["connectionId"] = "secondConnId="
    response = app.lambda_handler(second, lambda_context)

    # Then TaskState points at the new connection
    assert response["statusCode"] == 200
    assert cp.task_state.get(AGENT_USER).agent_connection_id == "secondConnId="


def test_sample_agent_event_parses_to_its_credentials() -> None:
    # Given the sample event used by `sam local invoke`
    request = ConnectRequest.from_event(load_event("ws_connect_agent.json"))

    # Then every agent credential is found and no client token
    assert request.connection_id == "bXbZ1dW3IAMCK0A="
    assert (request.agent_user, request.agent_task_arn) == (AGENT_USER, TASK_ARN)
    assert request.agent_token == "REPLACE_WITH_AGENT_TOKEN"
    assert request.client_token is None


@pytest.mark.parametrize(
    ("headers", "multi", "found", "ambiguous"),
    [
        ({"X-Agent-Token": "a"}, None, {"x-agent-token": "a"}, False),
        (None, {"X-Agent-Token": ["a"]}, {"x-agent-token": "a"}, False),
        ({"x-agent-token": "a"}, {"x-agent-token": ["a"]}, {"x-agent-token": "a"}, False),
        ({"x-agent-token": "a"}, {"X-Agent-Token": ["b"]}, {}, True),
        (None, {"x-agent-token": ["a", "b"], "x-agent-user": ["u"]}, {"x-agent-user": "u"}, True),
        ({"x-agent-token": 5, "x-agent-user": "u"}, {"x-agent-task-arn": "t"}, {"x-agent-user": "u"}, False),
        (None, {"x-agent-token": [5, "a", None]}, {"x-agent-token": "a"}, False),
        ({"host": "h", 7: "x"}, {"accept": ["*/*"]}, {}, False),
        ("x-agent-token: a", ["x-agent-token"], {}, False),
    ],
)
def test_agent_headers_are_read_from_both_header_maps_and_conflicts_are_flagged(
    headers: Any, multi: Any, found: dict[str, str], ambiguous: bool
) -> None:
    # Given a $connect event whose header maps are as API Gateway sends them, or malformed
    event = {"requestContext": {"connectionId": "c1="}, "headers": headers, "multiValueHeaders": multi}

    # When it is read
    request = ConnectRequest.from_event(event)

    # Then only string values of the agent headers count, and two different values for one are a conflict
    assert {
        name: value
        for name, value in (
            ("x-agent-user", request.agent_user),
            ("x-agent-task-arn", request.agent_task_arn),
            ("x-agent-token", request.agent_token),
        )
        if value is not None
    } == found
    assert request.ambiguous_headers is ambiguous
