"""The bridge's HTTP surface and its start-up failure path (no OpenClaw needed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bridge.app import Bridge, create_app
from bridge.config import BridgeConfig
from bridge.openclaw_config import build_config
from serverless_openclaw.config import ConfigError
from tests.contract.conftest import free_port


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
        **overrides,
    }
    return BridgeConfig.from_env(env)


def test_health_reports_why_it_is_not_healthy_and_shutdown_is_loopback_only(tmp_path: Path) -> None:
    # Given a bridge whose start fails (no metadata endpoint)
    exits: list[str] = []
    app = create_app(_config(tmp_path), exit_process=lambda: exits.append("exit"))

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
    ],
)
def test_configuration_fails_fast_naming_the_variable(
    tmp_path: Path, overrides: dict[str, str], missing: str
) -> None:
    with pytest.raises(ConfigError, match=missing):
        _config(tmp_path, **overrides)


def test_the_model_choice_uses_the_tasks_region_and_names_only_keys_that_exist(
    aws: dict[str, str], tmp_path: Path
) -> None:
    # Given a task in eu-west-1 whose provider is Bedrock
    bedrock = Bridge(_config(tmp_path, MODEL_PROVIDER="bedrock", MODEL_BASE_URL="", AWS_REGION="eu-west-1"))
    choice, keys = bedrock._model_choice()
    written = build_config(choice, port=1, workspace=tmp_path, log_file=tmp_path / "log")
    # Then OpenClaw calls Bedrock in the task's region, not a default one
    assert keys == {} and written["models"]["providers"][choice.provider_id]["region"] == "eu-west-1"

    # Given a keyless openai-compatible endpoint (no key stored in SSM)
    keyless = Bridge(
        _config(tmp_path, MODEL_PROVIDER="openai-compatible", MODEL_BASE_URL="https://llm.internal/v1")
    )
    choice, keys = keyless._model_choice()
    written = build_config(choice, port=1, workspace=tmp_path, log_file=tmp_path / "log")
    # Then the config refers to no variable that would stay unset
    assert keys == {} and choice.api_key_env is None
    assert "${" not in json.dumps(written["models"])
