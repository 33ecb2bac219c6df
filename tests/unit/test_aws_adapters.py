"""The ECS launcher and the connection pusher: the exact requests they make, with botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from serverless_openclaw.aws import clients
from serverless_openclaw.aws.ecs import EcsLauncher
from serverless_openclaw.aws.pusher import ConnectionPusher
from serverless_openclaw.config import LaunchConfig
from serverless_openclaw.connections import Connection
from serverless_openclaw.lifecycle import Capacity
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.tasks import StartError

CFG = LaunchConfig(
    cluster="test-cluster",
    task_definition="arn:aws:ecs:us-east-1:123456789012:task-definition/test-bridge:3",
    subnets=("subnet-a", "subnet-b"),
    security_groups=("sg-1",),
)
TASK = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/abc"


@pytest.fixture
def ecs() -> Iterator[Stubber]:
    clients.reset()
    with Stubber(clients.client("ecs")) as stub:
        yield stub
    clients.reset()


def _run_request(capacity: str) -> dict[str, Any]:
    return {
        "cluster": "test-cluster",
        "taskDefinition": CFG.task_definition,
        "count": 1,
        "capacityProviderStrategy": [{"capacityProvider": capacity, "weight": 1}],
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": ["subnet-a", "subnet-b"],
                "securityGroups": ["sg-1"],
                "assignPublicIp": "ENABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "name": "bridge",
                    "environment": [
                        {"name": "USER_ID", "value": "telegram:42"},
                        {"name": "TASK_CAPACITY", "value": capacity},
                    ],
                }
            ]
        },
        "startedBy": "serverless-openclaw",
        "tags": [{"key": "serverless-openclaw:user", "value": "telegram:42"}],
        "enableECSManagedTags": True,
        "clientToken": ANY,
    }


def test_spot_first_with_no_secret_in_the_overrides(ecs: Stubber) -> None:
    # Given ECS accepts the Spot request
    ecs.add_response("run_task", {"tasks": [{"taskArn": TASK}], "failures": []}, _run_request("FARGATE_SPOT"))

    # When the launcher starts the user's agent
    launched = EcsLauncher(CFG).launch("telegram:42", "7")

    # Then exactly that request was made (user id only, no token) and the task is on Spot
    assert launched.task_arn == TASK and launched.capacity is Capacity.SPOT
    ecs.assert_no_pending_responses()


def test_spot_capacity_failure_retries_on_fargate(ecs: Stubber) -> None:
    # Given Spot has no capacity (ECS answers with a failure, not an exception)
    ecs.add_response(
        "run_task",
        {"tasks": [], "failures": [{"arn": "", "reason": "Capacity is unavailable at this time."}]},
        _run_request("FARGATE_SPOT"),
    )
    ecs.add_response("run_task", {"tasks": [{"taskArn": TASK}], "failures": []}, _run_request("FARGATE"))

    # When the launcher starts the agent
    launched = EcsLauncher(CFG).launch("telegram:42", "7")

    # Then it ran on on-demand Fargate
    assert launched.capacity is Capacity.ON_DEMAND
    ecs.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("AccessDeniedException", "not authorized to perform ecs:RunTask"),
        ("ClusterNotFoundException", "Cluster not found."),
        ("InvalidParameterException", "No Container Instances were found in your cluster."),
    ],
)
def test_other_run_task_errors_are_surfaced_without_fallback(ecs: Stubber, code: str, message: str) -> None:
    # Given ECS refuses for a reason that is not capacity
    ecs.add_client_error("run_task", service_error_code=code, service_message=message, http_status_code=400)

    # When the launcher starts the agent
    with pytest.raises(StartError) as raised:
        EcsLauncher(CFG).launch("telegram:42", "7")

    # Then the error names the cause, is not a capacity error, and no on-demand retry was made
    assert code in raised.value.reason and not raised.value.capacity
    ecs.assert_no_pending_responses()


def test_failure_without_a_task_is_an_error(ecs: Stubber) -> None:
    ecs.add_response(
        "run_task",
        {"tasks": [], "failures": [{"arn": "x", "reason": "MISSING", "detail": "task definition inactive"}]},
        _run_request("FARGATE_SPOT"),
    )
    with pytest.raises(StartError, match="MISSING: task definition inactive"):
        EcsLauncher(CFG).launch("telegram:42", "7")


def test_stop_of_a_vanished_task_reports_gone(ecs: Stubber) -> None:
    ecs.add_response(
        "stop_task", {"task": {"taskArn": TASK}}, {"cluster": "test-cluster", "task": TASK, "reason": "idle"}
    )
    ecs.add_client_error("stop_task", service_error_code="InvalidParameterException", http_status_code=400)
    launcher = EcsLauncher(CFG)
    assert launcher.stop(TASK, "idle") is True
    assert launcher.stop(TASK, "idle") is False


def test_running_tasks_lists_our_family_only(ecs: Stubber) -> None:
    for status in ("RUNNING", "PENDING"):
        ecs.add_response(
            "list_tasks",
            {"taskArns": [f"{TASK}-{status.lower()}"]},
            {"cluster": "test-cluster", "family": "test-bridge", "desiredStatus": status},
        )
    assert EcsLauncher(CFG).running_tasks() == [f"{TASK}-running", f"{TASK}-pending"]


def test_gone_connection_is_deleted_and_others_still_get_the_frame(aws: dict[str, str]) -> None:
    # Given a user with two tabs, one of which closed without a $disconnect
    store = ConnectionStore(aws["CONNECTIONS_TABLE"])
    store.put(Connection("dead", "u1", "client", 1))
    store.put(Connection("live", "u1", "client", 2))
    pusher = ConnectionPusher("https://abc123.execute-api.us-east-1.amazonaws.com/prod", store)
    api = clients.client("apigatewaymanagementapi", pusher.endpoint)

    with Stubber(api) as stub:
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        stub.add_response("post_to_connection", {}, {"ConnectionId": "live", "Data": b'{"type":"pong"}'})

        # When a frame is fanned out
        delivered = pusher.to_user("u1", {"type": "pong"})

    # Then the live tab got it and the dead one is forgotten
    assert delivered == 1
    assert [c.connection_id for c in store.for_user("u1")] == ["live"]


def test_other_push_errors_keep_the_connection(aws: dict[str, str]) -> None:
    store = ConnectionStore(aws["CONNECTIONS_TABLE"])
    store.put(Connection("c1", "u1", "client", 1))
    pusher = ConnectionPusher("https://abc123.execute-api.us-east-1.amazonaws.com/prod", store)
    with Stubber(clients.client("apigatewaymanagementapi", pusher.endpoint)) as stub:
        stub.add_client_error(
            "post_to_connection", service_error_code="LimitExceededException", http_status_code=429
        )
        assert pusher.send("c1", {"type": "pong"}) is False
    assert store.get("c1") is not None


def test_a_streamed_reply_looks_up_the_users_connections_once_per_second(aws: dict[str, str]) -> None:
    # Given a user with one tab, and a pusher whose clock the test controls
    store = ConnectionStore(aws["CONNECTIONS_TABLE"])
    store.put(Connection("tab-1", "u1", "client", 1))
    now = [100.0]
    pusher = ConnectionPusher(
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod", store, clock=lambda: now[0]
    )
    queries: list[str] = []
    clients.client("dynamodb").meta.events.register(
        "before-call.dynamodb.Query", lambda **_: queries.append("Query")
    )
    api = clients.client("apigatewaymanagementapi", pusher.endpoint)

    with Stubber(api) as stub:
        for _ in range(4):
            stub.add_response("post_to_connection", {}, {"ConnectionId": "tab-1", "Data": ANY})
        stub.add_response("post_to_connection", {}, {"ConnectionId": "tab-2", "Data": ANY})
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        for _ in range(2):
            stub.add_response("post_to_connection", {}, {"ConnectionId": "tab-2", "Data": ANY})

        # When three chunks go out within a second: one lookup for all of them
        for _ in range(3):
            assert pusher.to_user("u1", {"type": "stream_chunk"}) == 1
        assert queries == ["Query"]
        # And a tab opened meanwhile joins once the lookup is a second old
        store.put(Connection("tab-2", "u1", "client", 2))
        now[0] += 1.5
        assert pusher.to_user("u1", {"type": "stream_chunk"}) == 2
        assert queries == ["Query", "Query"]
        # And a tab that went away is dropped at once, without waiting for the next lookup
        assert pusher.to_user("u1", {"type": "stream_chunk"}) == 1
        assert pusher.to_user("u1", {"type": "stream_chunk"}) == 1
        assert queries == ["Query", "Query"]
    assert [c.connection_id for c in store.for_user("u1")] == ["tab-2"]


def test_a_tab_opened_just_after_a_reply_gets_the_next_reply_whole(aws: dict[str, str]) -> None:
    # Given a tab that received a reply and then closed, and a pusher whose clock stands still
    store = ConnectionStore(aws["CONNECTIONS_TABLE"])
    store.put(Connection("old-tab", "u1", "client", 1))
    pusher = ConnectionPusher(
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod", store, clock=lambda: 100.0
    )
    api = clients.client("apigatewaymanagementapi", pusher.endpoint)
    with Stubber(api) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "old-tab", "Data": ANY})
        stub.add_response("post_to_connection", {}, {"ConnectionId": "old-tab", "Data": ANY})
        assert pusher.to_user("u1", {"type": "stream_chunk"}) == 1
        assert pusher.to_user("u1", {"type": "stream_end"}) == 1
        store.delete("old-tab")

        # When a new tab opens within the same second and the next (short) reply streams
        store.put(Connection("new-tab", "u1", "client", 2))
        stub.add_client_error("post_to_connection", service_error_code="GoneException", http_status_code=410)
        for _ in range(2):
            stub.add_response("post_to_connection", {}, {"ConnectionId": "new-tab", "Data": ANY})
        first_chunk = pusher.to_user("u1", {"type": "stream_chunk"})
        second_chunk = pusher.to_user("u1", {"type": "stream_chunk"})
        end = pusher.to_user("u1", {"type": "stream_end"})
        stub.assert_no_pending_responses()

    # Then the first chunk found only the gone tab, which emptied the cached list; the new tab is
    # looked up at once and gets the next chunk and the end with the full text
    assert (first_chunk, second_chunk, end) == (0, 1, 1)


def test_a_prefetch_spares_the_first_chunk_its_lookup(aws: dict[str, str]) -> None:
    # Given a user with one tab, and a pusher whose clock stands still
    store = ConnectionStore(aws["CONNECTIONS_TABLE"])
    store.put(Connection("tab-1", "u1", "client", 1))
    pusher = ConnectionPusher(
        "https://abc123.execute-api.us-east-1.amazonaws.com/prod", store, clock=lambda: 5.0
    )
    queries: list[str] = []
    clients.client("dynamodb").meta.events.register(
        "before-call.dynamodb.Query", lambda **_: queries.append("Q")
    )

    # When the connections are prefetched while the model thinks, then the first chunk needs no lookup
    pusher.prefetch("u1")
    assert queries == ["Q"]
    with Stubber(clients.client("apigatewaymanagementapi", pusher.endpoint)) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "tab-1", "Data": ANY})
        assert pusher.to_user("u1", {"type": "stream_chunk"}) == 1
    assert queries == ["Q"]


def test_secure_parameters_are_read_decrypted_and_missing_ones_are_none(aws: dict[str, str]) -> None:
    from bridge.secrets import model_secrets
    from serverless_openclaw.aws.parameters import read_secure

    ssm = clients.client("ssm")
    ssm.put_parameter(Name="/test/secrets/anthropic-api-key", Value="sk-ant-123", Type="SecureString")
    assert read_secure(ssm, "/test/secrets/anthropic-api-key") == "sk-ant-123"
    assert read_secure(ssm, "/test/secrets/never-stored") is None
    # The bridge maps a provider to the variable OpenClaw's config names; a missing key is no key
    assert model_secrets(ssm, "/test/secrets", "anthropic") == {"ANTHROPIC_API_KEY": "sk-ant-123"}
    assert model_secrets(ssm, "/test/secrets", "openai") == {}
    assert model_secrets(ssm, "/test/secrets", "bedrock") == {}
