"""The HTTP API (`/api/*`) through its Lambda handler, driven by the events/ files, on moto tables."""

from __future__ import annotations

import base64
import importlib
import json
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from ulid import ULID

from serverless_openclaw.aws.clients import client
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from tests.conftest import load_event
from tests.fakes import Clock, FakeLauncher

ALICE = "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"  # the sub in the events/ files
BOB = "0a9b8c7d-6e5f-4a3b-2c1d-0e9f8a7b6c5d"
NO_CALLER = object()


@pytest.fixture
def app(cp: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.http_api.app")
    monkeypatch.setattr(module, "plane", cp)
    return module


class Api:
    """Sends requests built from the events/ files through the handler; returns (status, JSON body)."""

    def __init__(self, app: ModuleType, lambda_context: Any) -> None:
        self.app = app
        self.lambda_context = lambda_context
        self.last: dict[str, Any] = {}

    def call(
        self,
        method: str,
        path: str,
        *,
        user: object = ALICE,
        query: dict[str, str] | None = None,
        body: Any = None,
        sample: str = "http_api_list_conversations.json",
    ) -> tuple[int, Any]:
        event: dict[str, Any] = load_event(sample)
        event["rawPath"] = path
        event["requestContext"]["http"].update(method=method, path=path)
        event["pathParameters"] = {"proxy": path.removeprefix("/api/")}
        event["rawQueryString"] = urlencode(query or {})
        event.pop("queryStringParameters", None)
        if query:
            event["queryStringParameters"] = dict(query)
        event.pop("body", None)
        if body is not None:
            event["body"] = body if isinstance(body, str) else json.dumps(body)
        claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
        if user is NO_CALLER:
            del event["requestContext"]["authorizer"]
        else:
            claims.update({"sub": user, "cognito:username": user})
        return self.send(event)

    def send(self, event: dict[str, Any]) -> tuple[int, Any]:
        self.last = self.app.lambda_handler(event, self.lambda_context)
        text = self.last.get("body")
        return self.last["statusCode"], json.loads(text) if text else None


@pytest.fixture
def api(app: ModuleType, lambda_context: Any) -> Api:
    return Api(app, lambda_context)


def seed_conversation(cp: ControlPlane, user_id: str, conversation_id: str, texts: list[str]) -> None:
    """Store a conversation whose messages are one second apart, so "newest first" is unambiguous."""
    for i, text in enumerate(texts):
        at = cp.clock() + i
        role = "user" if i % 2 == 0 else "assistant"
        # Ids from the fake clock, not the wall clock: two messages can never share a millisecond.
        message_id = str(ULID.from_timestamp(at))
        cp.conversations.add_message(user_id, conversation_id, role, text, "web", at, message_id=message_id)


def rows(table: str, user_id: str, prefix: str = "") -> list[dict[str, Any]]:
    """Every item of a user's partition (optionally under a sort-key prefix), straight from DynamoDB."""
    condition = "PK = :pk" + (" AND begins_with(SK, :prefix)" if prefix else "")
    values: dict[str, Any] = {":pk": {"S": f"USER#{user_id}"}}
    if prefix:
        values[":prefix"] = {"S": prefix}
    items: list[dict[str, Any]] = client("dynamodb").query(
        TableName=table, KeyConditionExpression=condition, ExpressionAttributeValues=values
    )["Items"]
    return items


def table_is_empty(table: str) -> bool:
    return bool(client("dynamodb").scan(TableName=table)["Count"] == 0)


def cursor_for(plain: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


# --- conversations ---------------------------------------------------------------------------------


def test_list_conversations_pages_through_and_back(api: Api, cp: ControlPlane) -> None:
    # Given five conversations of Alice
    for n in range(1, 6):
        seed_conversation(cp, ALICE, f"conv-{n}", [f"question {n}"])

    # When she lists them two at a time, following nextCursor to the end
    status1, page1 = api.call("GET", "/api/conversations", query={"limit": "2"})
    status2, page2 = api.call(
        "GET", "/api/conversations", query={"limit": "2", "cursor": page1["nextCursor"]}
    )
    status3, page3 = api.call(
        "GET", "/api/conversations", query={"limit": "2", "cursor": page2["nextCursor"]}
    )
    # and goes back to the second page with the cursor she kept
    again_status, again = api.call(
        "GET", "/api/conversations", query={"limit": "2", "cursor": page1["nextCursor"]}
    )

    # Then she sees every conversation once, newest first, and the last page says there is no more
    assert (status1, status2, status3, again_status) == (200, 200, 200, 200)
    seen = [c["conversationId"] for c in page1["items"] + page2["items"] + page3["items"]]
    assert seen == ["conv-5", "conv-4", "conv-3", "conv-2", "conv-1"]
    assert page3["nextCursor"] is None
    assert again == page2
    assert page1["items"][0]["title"] == "question 5"
    assert not {"PK", "SK", "ttl"} & set(page1["items"][0])


def test_list_conversations_default_page_is_everything_small(api: Api, cp: ControlPlane) -> None:
    # Given Alice has no conversation yet, then one
    status_empty, empty = api.call("GET", "/api/conversations", sample="http_api_list_conversations.json")
    seed_conversation(cp, ALICE, "only", ["hello"])

    # When she lists without parameters
    status, page = api.call("GET", "/api/conversations")

    # Then an empty list first, then her one conversation, with no further page
    assert (status_empty, empty) == (200, {"items": [], "nextCursor": None})
    assert status == 200 and [c["conversationId"] for c in page["items"]] == ["only"]
    assert page["nextCursor"] is None


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1", "2.5", "1,2"])
def test_bad_limit_is_400(api: Api, limit: str) -> None:
    # Given / When a listing asks for an impossible page size
    status, body = api.call("GET", "/api/conversations", query={"limit": limit})

    # Then it is refused with a readable reason
    assert status == 400 and body["error"] == "bad_request" and "limit" in body["message"]


def test_cursor_of_another_user_is_refused(api: Api, cp: ControlPlane) -> None:
    # Given Bob has three conversations and a cursor into his listing
    for n in range(3):
        seed_conversation(cp, BOB, f"bob-{n}", [f"bob secret {n}"])
    _, bob_page = api.call("GET", "/api/conversations", user=BOB, query={"limit": "1"})
    assert bob_page["nextCursor"]

    # When Alice replays Bob's cursor
    status, body = api.call(
        "GET", "/api/conversations", query={"limit": "1", "cursor": bob_page["nextCursor"]}
    )

    # Then she gets a 400, never one of Bob's conversations
    assert status == 400 and body["error"] == "invalid_cursor"
    assert "bob" not in json.dumps(body)


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-base64!!!",
        cursor_for({"PK": f"USER#{BOB}", "SK": "CONV#bob-1"}),
        cursor_for({"PK": f"USER#{ALICE}", "SK": "SETTING#model"}),
        cursor_for({"PK": f"USER#{ALICE}", "SK": "CONV#x", "extra": "1"}),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        "A" * 5000,
    ],
    ids=["garbage", "forged-other-user", "forged-other-prefix", "extra-key", "not-an-object", "huge"],
)
def test_forged_or_garbage_cursor_is_400(api: Api, cp: ControlPlane, cursor: str) -> None:
    # Given Bob has data a forged cursor might reach
    seed_conversation(cp, BOB, "bob-1", ["bob secret"])
    seed_conversation(cp, BOB, "bob-2", ["bob secret"])

    # When Alice lists with a cursor nobody issued to her
    status, body = api.call("GET", "/api/conversations", query={"cursor": cursor})

    # Then 400, and nothing of Bob's
    assert status == 400 and body["error"] == "invalid_cursor"


def test_messages_newest_first_with_pagination(api: Api, cp: ControlPlane) -> None:
    # Given a conversation of five messages, one second apart
    texts = ["first", "second", "third", "fourth", "fifth"]
    seed_conversation(cp, ALICE, "chat-1", texts)

    # When Alice reads it three at a time
    status1, page1 = api.call(
        "GET", "/api/conversations/chat-1/messages", query={"limit": "3"}, sample="http_api_get_messages.json"
    )
    status2, page2 = api.call(
        "GET", "/api/conversations/chat-1/messages", query={"limit": "3", "cursor": page1["nextCursor"]}
    )

    # Then the newest message comes first and the second page completes the conversation
    assert status1 == status2 == 200
    assert [m["content"] for m in page1["items"]] == ["fifth", "fourth", "third"]
    assert [m["content"] for m in page2["items"]] == ["second", "first"]
    assert page2["nextCursor"] is None
    assert page1["items"][0]["role"] == "user" and page1["items"][1]["role"] == "assistant"


def test_message_cursor_of_another_conversation_is_refused(api: Api, cp: ControlPlane) -> None:
    # Given two conversations of Alice and a cursor into the first
    seed_conversation(cp, ALICE, "chat-1", ["a", "b", "c"])
    seed_conversation(cp, ALICE, "chat-2", ["x", "y", "z"])
    _, page = api.call("GET", "/api/conversations/chat-1/messages", query={"limit": "1"})

    # When the cursor is used on the other conversation
    status, body = api.call("GET", "/api/conversations/chat-2/messages", query={"cursor": page["nextCursor"]})

    # Then it is refused rather than mixing conversations
    assert status == 400 and body["error"] == "invalid_cursor"


def test_messages_of_unknown_conversation_is_404(api: Api) -> None:
    # Given / When Alice asks for a conversation that does not exist
    status, body = api.call("GET", "/api/conversations/nope/messages")

    # Then 404
    assert (status, body) == (404, {"error": "not_found"})


@pytest.mark.parametrize("conversation_id", ["bad!id", "a%20b", "-leading-dash", "x" * 65, "USER%23x"])
def test_conversation_id_outside_identifier_pattern_is_400(
    api: Api, cp: ControlPlane, conversation_id: str
) -> None:
    # Given a conversation exists (so only the id's shape can explain a refusal)
    seed_conversation(cp, ALICE, "chat-1", ["hi"])

    # When the path carries an id the protocol never issues
    get_status, get_body = api.call("GET", f"/api/conversations/{conversation_id}/messages")
    del_status, del_body = api.call("DELETE", f"/api/conversations/{conversation_id}")

    # Then both are 400 and nothing was deleted
    assert get_status == del_status == 400
    assert get_body["error"] == del_body["error"] == "bad_request"
    assert len(rows(cp.conversations.table, ALICE)) == 2


def test_delete_removes_header_and_messages(api: Api, cp: ControlPlane) -> None:
    # Given two conversations of Alice
    seed_conversation(cp, ALICE, "01J9ZK3V8Q4M2N6P7R8S9T0V1W", ["one", "two", "three"])
    seed_conversation(cp, ALICE, "keep", ["stay"])

    # When she deletes the first (the sample event)
    status, body = api.send(load_event("http_api_delete_conversation.json"))

    # Then 204 with no body, its header and every message are gone, the other one is untouched
    assert (status, body) == (204, None)
    table = cp.conversations.table
    assert rows(table, ALICE, "CONV#01J9ZK3V8Q4M2N6P7R8S9T0V1W") == []
    assert rows(table, ALICE, "MSG#01J9ZK3V8Q4M2N6P7R8S9T0V1W#") == []
    assert len(rows(table, ALICE, "MSG#keep#")) == 1
    _, listing = api.call("GET", "/api/conversations")
    assert [c["conversationId"] for c in listing["items"]] == ["keep"]
    again_status, _ = api.call("DELETE", "/api/conversations/01J9ZK3V8Q4M2N6P7R8S9T0V1W")
    assert again_status == 404


def test_delete_unknown_conversation_is_404(api: Api) -> None:
    # Given / When Alice deletes a conversation she never had
    status, body = api.call("DELETE", "/api/conversations/never-existed")

    # Then 404
    assert (status, body) == (404, {"error": "not_found"})


# --- settings --------------------------------------------------------------------------------------


def test_settings_default_when_never_set(api: Api) -> None:
    # Given / When a new user reads their settings (the sample event)
    status, body = api.send(load_event("http_api_get_settings.json"))

    # Then the stack defaults, the providers they can pick from, and what a wake on intent nobody writes
    # after costs (1 vCPU / 2 GB for the 3 minutes of the warm idle timeout, its address included)
    assert status == 200
    assert body == {
        "model": None,
        "idleTimeoutMinutes": 15,
        "timezone": "UTC",
        "wakeOnIntent": True,
        "supportedProviders": ["anthropic", "openai", "openai-compatible", "offline"],
        "wakeOnIntentCost": {
            "minutes": 3.0,
            "spotUsd": 0.0008,
            "onDemandUsd": 0.0022,
            "pricesAsOf": "2025-06",
        },
    }


def test_good_settings_persist_with_history(api: Api, cp: ControlPlane) -> None:
    # Given / When Alice saves a model, an idle timeout and a time zone (the sample event)
    status, body = api.send(load_event("http_api_put_settings.json"))

    # Then the response and a later read show them, and each change has a history row
    expected = {"model": "anthropic/claude-sonnet-4-5", "idleTimeoutMinutes": 30, "timezone": "Europe/Paris"}
    assert status == 200 and {k: body[k] for k in expected} == expected
    _, read_back = api.call("GET", "/api/settings")
    assert {k: read_back[k] for k in expected} == expected
    for key, value in expected.items():
        assert [h["value"] for h in cp.settings.history(ALICE, key)] == [value]


@pytest.mark.parametrize("minutes", [5, 240])
def test_idle_timeout_bounds_are_accepted(api: Api, minutes: int) -> None:
    # Given / When Alice sets the idle timeout at either bound
    status, body = api.call("PUT", "/api/settings", body={"idleTimeoutMinutes": minutes})

    # Then it is kept; the settings she did not touch keep their defaults
    assert status == 200 and body["idleTimeoutMinutes"] == minutes and body["timezone"] == "UTC"


def test_second_change_adds_history_and_wins(api: Api, cp: ControlPlane, clock: Clock) -> None:
    # Given Alice set a time zone a minute ago
    api.call("PUT", "/api/settings", body={"timezone": "Europe/Paris"})
    clock.advance(60)

    # When she changes it again
    status, body = api.call("PUT", "/api/settings", body={"timezone": "America/New_York"})

    # Then the newest value is current and both are in the history, newest first
    assert status == 200 and body["timezone"] == "America/New_York"
    assert [h["value"] for h in cp.settings.history(ALICE, "timezone")] == [
        "America/New_York",
        "Europe/Paris",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"idleTimeoutMinutes": 4}, "idleTimeoutMinutes"),
        ({"idleTimeoutMinutes": 241}, "idleTimeoutMinutes"),
        ({"idleTimeoutMinutes": "30"}, "idleTimeoutMinutes"),
        ({"idleTimeoutMinutes": True}, "idleTimeoutMinutes"),
        ({"model": "cats/foo"}, "model"),
        ({"model": "claude"}, "model"),
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"colour": "blue"}, "colour"),
        ({"timezone": "Europe/Paris", "idleTimeoutMinutes": 4}, "idleTimeoutMinutes"),
        ({}, "settings"),
    ],
    ids=[
        "timeout-4",
        "timeout-241",
        "timeout-string",
        "timeout-bool",
        "unknown-provider",
        "no-provider",
        "bad-zone",
        "unknown-key",
        "one-bad-of-two",
        "empty",
    ],
)
def test_invalid_settings_are_400_with_reasons_and_write_nothing(
    api: Api, cp: ControlPlane, change: dict[str, Any], field: str
) -> None:
    # Given / When Alice submits a settings change with a value that is not allowed
    status, body = api.call("PUT", "/api/settings", body=change)

    # Then 400 names the field with a reason, nothing is stored (not even the good part), defaults remain
    assert status == 400 and body["error"] == "invalid_settings"
    assert isinstance(body["fields"][field], str) and body["fields"][field]
    assert table_is_empty(cp.settings.table)
    _, current = api.call("GET", "/api/settings")
    assert current["timezone"] == "UTC" and current["idleTimeoutMinutes"] == 15


def test_each_refused_setting_says_what_is_allowed(api: Api) -> None:
    # Given / When Alice submits one bad value of every kind
    change = {
        "idleTimeoutMinutes": 3.5,
        "model": "openai/gpt 5",
        "timezone": 7,
        "colour": "blue",
    }
    status, body = api.call("PUT", "/api/settings", body=change)

    # Then each field says what it accepts
    assert status == 400 and body["fields"] == {
        "idleTimeoutMinutes": "must be a whole number of minutes from 5 to 240",
        "model": "model id has characters that are not allowed",
        "timezone": "must be an IANA time zone such as Europe/Paris",
        "colour": "is not a setting",
    }
    for model, problem in [
        ("claude", "must be '<provider>/<model id>', e.g. anthropic/claude-sonnet-4-5"),
        ("cats/foo", "provider must be one of anthropic, openai, openai-compatible, offline"),
        (
            "bedrock/anthropic.claude-sonnet-4-5-v1:0",
            "Amazon Bedrock is not available: the pinned OpenClaw reaches it only through its plugin "
            "@openclaw/amazon-bedrock-provider, which is not published on npm, so the bridge image cannot "
            "include it; use anthropic, openai or an openai-compatible endpoint",
        ),
    ]:
        assert api.call("PUT", "/api/settings", body={"model": model})[1]["fields"] == {"model": problem}
    assert api.call("PUT", "/api/settings", body={})[1]["fields"] == {"settings": "nothing to change"}


def test_settings_body_base64_encoded_is_accepted(api: Api) -> None:
    # Given API Gateway delivered the JSON body base64-encoded
    event: dict[str, Any] = load_event("http_api_put_settings.json")
    event["body"] = base64.b64encode(json.dumps({"timezone": "Asia/Tokyo"}).encode()).decode()
    event["isBase64Encoded"] = True

    # When it reaches the handler
    status, body = api.send(event)

    # Then it is read like any other body
    assert status == 200 and body["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    "raw", ['{"timezone": "Europe/Paris"', "not json", "", "[1, 2]", '"Europe/Paris"', "null"]
)
def test_malformed_or_non_object_body_is_400(api: Api, cp: ControlPlane, raw: str) -> None:
    # Given / When the settings body is not a JSON object
    event: dict[str, Any] = load_event("http_api_put_settings.json")
    event["body"] = raw
    status, body = api.send(event)

    # Then a generic 400 and nothing is written
    assert status == 400 and body["error"] == "bad_request"
    assert table_is_empty(cp.settings.table)


def test_oversized_body_is_413_and_writes_nothing(api: Api, cp: ControlPlane) -> None:
    # Given a settings body just over 64 KiB (valid JSON otherwise)
    big = json.dumps({"timezone": "Europe/Paris", "padding": "x" * (64 * 1024)})

    # When it is sent plainly and base64-encoded
    status, body = api.call("PUT", "/api/settings", body=big)
    event: dict[str, Any] = load_event("http_api_put_settings.json")
    event["body"], event["isBase64Encoded"] = base64.b64encode(big.encode()).decode(), True
    b64_status, _ = api.send(event)

    # Then both are refused as too large and nothing is stored
    assert (status, body["error"], b64_status) == (413, "too_large", 413)
    assert table_is_empty(cp.settings.table)


def test_body_at_the_limit_is_read(api: Api) -> None:
    # Given a body of exactly 64 KiB
    prefix = '{"timezone": "Europe/Paris", "pad": "'
    raw = prefix + "x" * (64 * 1024 - len(prefix) - 2) + '"}'
    assert len(raw.encode()) == 64 * 1024

    # When it is sent
    status, body = api.call("PUT", "/api/settings", body=raw)

    # Then it is parsed (and refused for its unknown key, not for its size)
    assert status == 400 and body["fields"] == {"pad": "is not a setting"}


# --- agent -----------------------------------------------------------------------------------------


def test_status_of_a_new_user_is_idle(api: Api) -> None:
    # Given / When a user who never started an agent asks (the sample event)
    status, body = api.send(load_event("http_api_get_status.json"))

    # Then idle, with no error history
    assert (status, body) == (200, {"type": "status", "status": "idle"})


def test_start_launches_one_task_and_a_second_start_does_not(
    api: Api, cp: ControlPlane, launcher: FakeLauncher
) -> None:
    # Given / When Alice starts her agent (the sample event), then asks again while it is starting
    first_status, first = api.send(load_event("http_api_agent_start.json"))
    second_status, second = api.call("POST", "/api/agent/start")

    # Then one task is launched on Spot, the row is Starting, the second request starts nothing
    assert (first_status, first) == (202, {"status": "starting", "started": True})
    assert (second_status, second) == (202, {"status": "starting", "started": False})
    assert launcher.launched == [(ALICE, Capacity.SPOT)]
    assert cp.task_state.get(ALICE).status is Status.STARTING


def test_status_while_starting_hides_the_task(api: Api, launcher: FakeLauncher) -> None:
    # Given Alice's agent is starting
    api.call("POST", "/api/agent/start")

    # When she asks for the status
    status, body = api.call("GET", "/api/status")

    # Then she sees "starting" with a phase and an ETA, and never the task ARN or any token hash
    assert status == 200 and body["status"] == "starting"
    assert body["phase"] == "provisioning" and body["etaSeconds"] == 45
    assert "arn:aws:ecs" not in api.last["body"] and "taskArn" not in body and "agentTokenHash" not in body


def test_failed_start_is_reported_and_visible_in_status(api: Api, launcher: FakeLauncher) -> None:
    # Given ECS refuses to run the task
    launcher.fail_with = "no Fargate capacity in this Region"

    # When Alice starts her agent, then asks for the status
    start_status, start = api.call("POST", "/api/agent/start")
    status, body = api.call("GET", "/api/status")

    # Then she is told why, the agent is idle, and the status carries the error and the attempt count
    assert start_status == 202
    assert start == {"status": "idle", "started": False, "error": "no Fargate capacity in this Region"}
    assert status == 200 and body["status"] == "idle"
    assert body["lastError"] == "no Fargate capacity in this Region" and body["startAttempts"] == 1


def test_stop_stops_the_task(api: Api, cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given Alice's agent is starting on a task
    api.call("POST", "/api/agent/start")
    task_arn = cp.task_state.get(ALICE).task_arn

    # When she stops it (the sample event)
    status, body = api.send(load_event("http_api_agent_stop.json"))

    # Then the task is stopped and her agent is Stopping
    assert (status, body) == (202, {"status": "stopping"})
    assert [arn for arn, _ in launcher.stopped] == [task_arn]
    assert task_arn not in launcher.live
    assert cp.task_state.get(ALICE).status is Status.STOPPING


def test_stop_when_idle_stops_nothing(api: Api, launcher: FakeLauncher) -> None:
    # Given / When a user without an agent asks to stop it
    status, body = api.call("POST", "/api/agent/stop")

    # Then nothing happens and they are told it is idle
    assert (status, body) == (202, {"status": "idle"})
    assert launcher.stopped == []


# --- identity and user isolation -------------------------------------------------------------------


def _without_claims(event: dict[str, Any]) -> None:
    del event["requestContext"]["authorizer"]


def _null_claims(event: dict[str, Any]) -> None:
    event["requestContext"]["authorizer"]["jwt"]["claims"] = None


def _no_sub(event: dict[str, Any]) -> None:
    del event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]


def _empty_sub(event: dict[str, Any]) -> None:
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "  "


@pytest.mark.parametrize("strip", [_without_claims, _null_claims, _no_sub, _empty_sub])
@pytest.mark.parametrize(
    "sample",
    [
        "http_api_list_conversations.json",
        "http_api_get_messages.json",
        "http_api_delete_conversation.json",
        "http_api_get_settings.json",
        "http_api_put_settings.json",
        "http_api_get_status.json",
        "http_api_agent_start.json",
        "http_api_agent_stop.json",
    ],
)
def test_missing_caller_is_401_and_nothing_happens(
    api: Api, cp: ControlPlane, launcher: FakeLauncher, sample: str, strip: Any
) -> None:
    # Given a sample request whose verified identity is missing
    event: dict[str, Any] = load_event(sample)
    strip(event)

    # When it reaches the handler
    status, body = api.send(event)

    # Then 401, and nothing is written, launched or stopped
    assert (status, body) == (401, {"error": "unauthorized"})
    assert table_is_empty(cp.settings.table) and table_is_empty(cp.task_state.table)
    assert launcher.launched == [] and launcher.stopped == []


def test_unknown_route_without_caller_is_401(api: Api) -> None:
    # Given / When an unauthenticated request probes for routes
    status, _ = api.call("GET", "/api/admin", user=NO_CALLER)

    # Then it learns nothing about which routes exist
    assert status == 401


def test_a_user_lists_only_their_own_conversations(api: Api, cp: ControlPlane) -> None:
    # Given Alice and Bob each have conversations
    seed_conversation(cp, ALICE, "alice-1", ["alice question"])
    seed_conversation(cp, BOB, "bob-1", ["bob secret"])
    seed_conversation(cp, BOB, "bob-2", ["bob secret 2"])

    # When Alice lists hers
    _, page = api.call("GET", "/api/conversations")

    # Then she sees only her own
    assert [c["conversationId"] for c in page["items"]] == ["alice-1"]
    assert "bob" not in api.last["body"]


def test_a_user_cannot_read_anothers_messages(api: Api, cp: ControlPlane) -> None:
    # Given Bob has a conversation
    seed_conversation(cp, BOB, "bob-1", ["bob secret"])

    # When Alice asks for its messages by id
    status, body = api.call("GET", "/api/conversations/bob-1/messages")

    # Then it does not exist for her
    assert (status, body) == (404, {"error": "not_found"})


def test_a_user_cannot_delete_anothers_conversation(api: Api, cp: ControlPlane) -> None:
    # Given Bob has a conversation
    seed_conversation(cp, BOB, "bob-1", ["bob secret", "answer"])

    # When Alice tries to delete it by id
    status, body = api.call("DELETE", "/api/conversations/bob-1")

    # Then 404, and Bob's conversation is intact
    assert (status, body) == (404, {"error": "not_found"})
    bob_status, bob_page = api.call("GET", "/api/conversations/bob-1/messages", user=BOB)
    assert bob_status == 200 and [m["content"] for m in bob_page["items"]] == ["answer", "bob secret"]


def test_a_user_cannot_stop_anothers_agent(api: Api, cp: ControlPlane, launcher: FakeLauncher) -> None:
    # Given Bob's agent is starting on a task
    api.call("POST", "/api/agent/start", user=BOB)
    bob_task = cp.task_state.get(BOB).task_arn

    # When Alice asks to stop "the" agent
    status, body = api.call("POST", "/api/agent/stop")

    # Then only her own (idle) agent is concerned: Bob's task keeps running
    assert (status, body) == (202, {"status": "idle"})
    assert bob_task in launcher.live and launcher.stopped == []
    assert cp.task_state.get(BOB).status is Status.STARTING
    _, bob_status = api.call("GET", "/api/status", user=BOB)
    assert bob_status["status"] == "starting"


def test_settings_do_not_leak_between_users(api: Api) -> None:
    # Given Alice changed her settings
    api.call("PUT", "/api/settings", body={"timezone": "Europe/Paris", "idleTimeoutMinutes": 60})

    # When Bob reads his
    status, body = api.call("GET", "/api/settings", user=BOB)

    # Then he sees the defaults
    assert status == 200 and body["timezone"] == "UTC" and body["idleTimeoutMinutes"] == 15


def test_another_users_failed_start_does_not_show_in_my_status(api: Api, launcher: FakeLauncher) -> None:
    # Given Bob's agent failed to start
    launcher.fail_with = "bob's task definition is broken"
    api.call("POST", "/api/agent/start", user=BOB)

    # When Alice asks for her status
    _, body = api.call("GET", "/api/status")

    # Then her status is clean
    assert body == {"type": "status", "status": "idle"}


# --- routing and faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nothing-here"),
        ("PATCH", "/api/settings"),
        ("GET", "/api/agent/start"),
        ("POST", "/api/conversations"),
        ("GET", "/api/conversations/a/b/messages"),
    ],
)
def test_unknown_route_is_json_404(api: Api, method: str, path: str) -> None:
    # Given / When a signed-in user calls a route that does not exist
    status, body = api.call(method, path)

    # Then a JSON 404
    assert (status, body) == (404, {"error": "not_found"})
    assert api.last["headers"]["Content-Type"] == "application/json"


def test_unexpected_failure_is_500_without_details(
    api: Api, cp: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the Conversations table fails in a way nobody planned for
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("arn:aws:dynamodb:us-east-1:123456789012:table/test-Conversations exploded")

    monkeypatch.setattr(cp.conversations, "conversations", broken)

    # When Alice lists her conversations
    status, body = api.call("GET", "/api/conversations")

    # Then a plain 500 that says nothing about the internals
    assert (status, body) == (500, {"error": "internal"})
    assert "arn:" not in api.last["body"] and "exploded" not in api.last["body"]


def test_business_events_are_counted(api: Api, cp: ControlPlane, capsys: pytest.CaptureFixture[str]) -> None:
    # Given Alice has a conversation
    seed_conversation(cp, ALICE, "chat-1", ["hi"])

    # When she changes a setting, fails another change, deletes the conversation twice, starts and stops
    api.call("PUT", "/api/settings", body={"timezone": "Europe/Paris"})
    api.call("PUT", "/api/settings", body={"timezone": "Mars/Base"})
    api.call("DELETE", "/api/conversations/chat-1")
    api.call("DELETE", "/api/conversations/chat-1")
    api.call("POST", "/api/agent/start")
    api.call("POST", "/api/agent/stop")

    # Then the metrics published say so, once each
    published = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = [
        m["Name"]
        for doc in published
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for m in directive["Metrics"]
        if m["Name"]
        in {"SettingsChanged", "ConversationDeleted", "AgentStartRequested", "AgentStopRequested"}
    ]
    assert sorted(names) == [
        "AgentStartRequested",
        "AgentStopRequested",
        "ConversationDeleted",
        "SettingsChanged",
    ]
