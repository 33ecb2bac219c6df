"""Shared fixtures: an in-process moto AWS with the tables of template.yaml, fakes for ECS and pushes."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator

import pytest

TEST_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "POWERTOOLS_SERVICE_NAME": "serverless-openclaw",
    "POWERTOOLS_METRICS_NAMESPACE": "ServerlessOpenClaw",
    "POWERTOOLS_DEV": "0",
    "LOG_LEVEL": "WARNING",
    "STACK_NAME": "test",
    "TASK_STATE_TABLE": "test-TaskState",
    "CONNECTIONS_TABLE": "test-Connections",
    "INBOX_TABLE": "test-Inbox",
    "CONVERSATIONS_TABLE": "test-Conversations",
    "SETTINGS_TABLE": "test-Settings",
    "IDEMPOTENCY_TABLE": "test-Idempotency",
    "IDLE_TIMEOUT_MINUTES": "15",
    "START_DEADLINE_SECONDS": "300",
    "HEARTBEAT_STALE_SECONDS": "180",
    "MAX_START_ATTEMPTS": "3",
    "START_ETA_SECONDS": "45",
    "ECS_CLUSTER": "test-cluster",
    "TASK_DEFINITION": "arn:aws:ecs:us-east-1:123456789012:task-definition/test-bridge:1",
    "TASK_SUBNETS": "subnet-aaaa,subnet-bbbb",
    "TASK_SECURITY_GROUP": "sg-1234",
    "TASK_CONTAINER_NAME": "bridge",
    "WEBSOCKET_MANAGEMENT_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
    "COGNITO_USER_POOL_ID": "us-east-1_TestPool",
    "COGNITO_CLIENT_ID": "test-client-id",
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool",
    "TELEGRAM_API_BASE": "https://api.telegram.org",
    "TELEGRAM_BOT_TOKEN_PARAMETER": "/test/secrets/telegram-bot-token",
    "TELEGRAM_WEBHOOK_SECRET_PARAMETER": "/test/secrets/telegram-webhook-secret",
    "WAKE_SCHEDULE_GROUP": "test-wake",
    "WAKE_FUNCTION_ARN": "arn:aws:lambda:us-east-1:123456789012:function:test-WakeFunction",
    "WAKE_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/test-WakeSchedulerRole",
}
# Function modules build their configuration at import time, so the environment is set before any import.
# No endpoint override and no profile: boto3 can only reach moto, with the fake credentials above.
for _name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL") or n == "AWS_PROFILE"]:
    del os.environ[_name]
os.environ.update(TEST_ENV)

import botocore.session  # noqa: E402
from botocore.loaders import Loader  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.backends import get_backend  # noqa: E402

from local.template import create_tables, load_template  # noqa: E402
from serverless_openclaw.aws import clients  # noqa: E402
from serverless_openclaw.config import ControlPlaneConfig  # noqa: E402
from serverless_openclaw.control_plane import ControlPlane  # noqa: E402
from serverless_openclaw.store.connections import ConnectionStore  # noqa: E402
from serverless_openclaw.store.conversations import ConversationStore  # noqa: E402
from serverless_openclaw.store.inbox import InboxStore  # noqa: E402
from serverless_openclaw.store.intake import IntakeStore  # noqa: E402
from serverless_openclaw.store.settings import SettingsStore  # noqa: E402
from serverless_openclaw.store.task_state import TaskStateStore  # noqa: E402
from tests.fakes import Clock, FakeLambdaContext, FakeLauncher, FakeSchedules, RecordingPusher  # noqa: E402


def _one_loader_per_data_path() -> None:
    """Every boto3 session of the test process shares one botocore loader.

    A new session parses the service models from JSON again (about 90 ms for its first client), and moto
    replaces boto3's default session at every mock while scripts under test build sessions of their own.
    The models never change during a run, so one loader (with its cache of parsed files) serves them all.
    """
    make_loader = botocore.session.create_loader
    loaders: dict[str | None, Loader] = {}

    def shared(search_path_string: str | None = None) -> Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = make_loader(search_path_string)
        return loaders[search_path_string]

    botocore.session.create_loader = shared


_one_loader_per_data_path()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        action="store_true",
        help="write each test's seconds to tests/durations.json (the order `-n` hands tests out in)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("record_durations"):
        from tests.scheduling import DurationRecorder

        config.pluginmanager.register(DurationRecorder(), "duration-recorder")


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown when it is not loaded (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`pytest -n …` with xdist's default distribution uses tests/scheduling.py (longest tests first)."""
    if config.getoption("dist") != "load":
        return None
    from tests.scheduling import LongTestsFirst

    return LongTestsFirst(config, log)


pytest_plugins = ["tests.unit.conftest_auth"]  # its signing-key fixtures serve auth and ws_connect tests


@pytest.fixture(scope="session")
def template() -> dict[str, object]:
    return load_template()


@pytest.fixture(scope="session")
def pristine_tables(template: dict[str, object]) -> tuple[dict[str, str], bytes]:
    """Every table of template.yaml, created once per test process: ({env var: table name}, a pickle of
    moto's DynamoDB backend holding them, empty). Creating them through the API costs 0.2-0.5 s a test."""
    with mock_aws():
        clients.reset()
        names = create_tables(clients.client("dynamodb"), template, "test")
        for env_var, table in names.items():
            assert os.environ[env_var] == table, f"conftest TEST_ENV[{env_var}] must be {table}"
        blob = pickle.dumps(dict(get_backend("dynamodb")))
    clients.reset()
    return names, blob


@contextlib.contextmanager
def fresh_aws(pristine: tuple[dict[str, str], bytes]) -> Iterator[dict[str, str]]:
    """A fresh moto backend holding the pristine tables; yields {env var: table name}."""
    names, blob = pristine
    with mock_aws():
        dynamodb = get_backend("dynamodb")
        dynamodb.clear()
        dynamodb.update(pickle.loads(blob))
        # Clients are remade for every backend; the session (and its parsed service models) is kept.
        clients.forget_clients()
        try:
            yield dict(names)
        finally:
            clients.forget_clients()
            # moto's own reset on exit does not always reach backends swapped in by hand (after a test that
            # used CloudFormation, the next mock_aws still held these tables): drop them here.
            dynamodb.clear()


@pytest.fixture
def aws(pristine_tables: tuple[dict[str, str], bytes]) -> Iterator[dict[str, str]]:
    """A fresh moto backend with every table of template.yaml created; yields {env var: table name}."""
    with fresh_aws(pristine_tables) as names:
        yield names


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def schedules() -> FakeSchedules:
    return FakeSchedules()


@pytest.fixture
def cp(aws: dict[str, str], clock: Clock, launcher: FakeLauncher, schedules: FakeSchedules) -> ControlPlane:
    """The control plane on moto tables, with a fake ECS and an in-memory WebSocket push."""
    cfg = ControlPlaneConfig.from_env()
    connections = ConnectionStore(cfg.tables.connections)
    return ControlPlane(
        cfg=cfg,
        task_state=TaskStateStore(cfg.tables.task_state),
        intake=IntakeStore(cfg.tables),
        inbox=InboxStore(cfg.tables.inbox),
        connections=connections,
        conversations=ConversationStore(cfg.tables.conversations),
        settings=SettingsStore(cfg.tables.settings),
        pusher=RecordingPusher(connections),
        launcher=launcher,
        clock=clock,
        schedules=schedules,
    )


@pytest.fixture
def pusher(cp: ControlPlane) -> RecordingPusher:
    assert isinstance(cp.pusher, RecordingPusher)
    return cp.pusher


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    """What the Lambda runtime passes as `context`."""
    return FakeLambdaContext()


def load_event(name: str) -> dict[str, object]:
    """A sample event from events/ (the same files `sam local invoke -e` uses)."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "events" / name
    with path.open(encoding="utf-8") as fh:
        data: dict[str, object] = json.load(fh)
    return data
