"""openclaw.json and the gateway child's environment: headless switches, providers, no leaked secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from bridge.openclaw_config import (
    GATEWAY_TOKEN_ENV,
    ModelChoice,
    build_config,
    gateway_environment,
    write_config,
)

OFFLINE = ModelChoice("offline", "offline-model", base_url="http://127.0.0.1:18999/v1")


def config_for(choice: ModelChoice, tmp_path: Path) -> dict[str, Any]:
    return build_config(choice, port=18789, workspace=tmp_path / "ws", log_file=tmp_path / "logs" / "oc.log")


def test_offline_config_has_every_headless_switch(tmp_path: Path) -> None:
    # Given the offline model
    # When the config is built
    config = config_for(OFFLINE, tmp_path)

    # Then the gateway is local, on loopback, token-protected, without Control UI
    assert config["gateway"] == {
        "mode": "local",
        "port": 18789,
        "bind": "loopback",
        "auth": {"mode": "token"},
        "controlUi": {"enabled": False},
    }
    # and nothing runs on its own: no heartbeat turns, no bootstrap ritual, no dreaming, no update check,
    # no catalog refresh, no mDNS, no channels
    defaults = config["agents"]["defaults"]
    assert defaults["heartbeat"] == {"every": "0m"}
    assert defaults["skipBootstrap"] is True
    assert defaults["workspace"] == str(tmp_path / "ws")
    assert config["plugins"]["entries"]["memory-core"] == {"config": {"dreaming": {"enabled": False}}}
    assert config["update"] == {"checkOnStart": False}
    assert config["models"]["catalogRefresh"] == {"enabled": False}
    assert config["discovery"] == {"mdns": {"mode": "off"}}
    assert config["logging"] == {"file": str(tmp_path / "logs" / "oc.log")}
    assert "channels" not in config


def test_the_config_names_nothing_that_changes_from_one_boot_to_the_next(tmp_path: Path) -> None:
    # Given the config of every supported kind of provider
    for choice in (OFFLINE, ModelChoice("anthropic", "claude-sonnet-4-5"), ModelChoice("openai", "gpt-5")):
        # When it is built
        config = config_for(choice, tmp_path)

        # Then it does not refer to the gateway token (a fresh value at every boot, read by the gateway from
        # its environment): OpenClaw fingerprints the resolved config to skip the state migrations a restored
        # home already had, and a reference to the token made every boot's fingerprint new
        assert config["gateway"]["auth"] == {"mode": "token"}
        assert GATEWAY_TOKEN_ENV not in json.dumps(config)


def test_offline_config_points_a_custom_provider_at_the_offline_model(tmp_path: Path) -> None:
    # Given / When
    config = config_for(OFFLINE, tmp_path)

    # Then only our endpoint is in the inventory and it is the agent's model
    assert config["models"]["mode"] == "replace"
    provider = config["models"]["providers"]["offline"]
    assert provider["api"] == "openai-completions"
    assert provider["baseUrl"] == "http://127.0.0.1:18999/v1"
    assert [m["id"] for m in provider["models"]] == ["offline-model"]
    assert config["agents"]["defaults"]["model"] == {"primary": "offline/offline-model"}


@pytest.mark.parametrize(
    ("choice", "provider_id", "key_ref"),
    [
        (
            ModelChoice("anthropic", "claude-sonnet-4-5", api_key_env="ANTHROPIC_API_KEY"),
            "anthropic",
            "ANTHROPIC",
        ),
        (ModelChoice("anthropic", "claude-sonnet-4-5"), "anthropic", "ANTHROPIC"),
        (ModelChoice("openai", "gpt-5.4"), "openai", "OPENAI"),
    ],
)
def test_builtin_providers_take_their_key_from_the_environment(
    choice: ModelChoice, provider_id: str, key_ref: str, tmp_path: Path
) -> None:
    # Given a built-in provider
    # When the config is built
    config = config_for(choice, tmp_path)

    # Then the key is a ${VAR} reference resolved by the gateway, never a value, and the catalog is merged
    assert config["models"]["providers"][provider_id] == {"apiKey": "${" + key_ref + "_API_KEY}"}
    assert config["models"]["mode"] == "merge"
    assert config["agents"]["defaults"]["model"]["primary"] == f"{provider_id}/{choice.model_id}"


def test_a_builtin_provider_behind_a_proxy_keeps_its_own_api(tmp_path: Path) -> None:
    # Given Anthropic reached through another base URL (a proxy or an AI gateway)
    choice = ModelChoice("anthropic", "claude-sonnet-4-5", base_url="https://llm-proxy.example.com")

    # When
    provider = config_for(choice, tmp_path)["models"]["providers"]["anthropic"]

    # Then it still speaks the Messages API there (a bare baseUrl would be taken for chat completions)
    assert provider == {
        "apiKey": "${ANTHROPIC_API_KEY}",
        "baseUrl": "https://llm-proxy.example.com",
        "api": "anthropic-messages",
    }


def test_bedrock_cannot_be_chosen() -> None:
    # Given / When Bedrock is asked for (its OpenClaw plugin is not on npm: the image cannot have it)
    # Then the choice is refused rather than written into a config that fails every turn
    with pytest.raises(ValueError, match="unknown model provider 'bedrock'"):
        ModelChoice("bedrock", "anthropic.claude-sonnet-4-5-v1:0")


@pytest.mark.parametrize("provider", ["anthropic", "openai", "offline", "openai-compatible"])
def test_no_config_names_the_external_bedrock_plugin(provider: str, tmp_path: Path) -> None:
    # Given any choice (naming a missing plugin makes the gateway try to npm-install it at boot)
    choice = ModelChoice(provider, "m", base_url="http://127.0.0.1:1/v1")

    # When / Then
    assert "amazon-bedrock" not in json.dumps(config_for(choice, tmp_path))


def test_openai_compatible_endpoint_with_a_key(tmp_path: Path) -> None:
    # Given a self-hosted OpenAI-compatible server whose key is in LLAMA_API_KEY
    choice = ModelChoice(
        "openai-compatible", "llama3", base_url="http://10.0.0.5:8000/v1", api_key_env="LLAMA_API_KEY"
    )

    # When
    config = config_for(choice, tmp_path)

    # Then
    provider = config["models"]["providers"]["custom"]
    assert provider["apiKey"] == "${LLAMA_API_KEY}"
    assert provider["baseUrl"] == "http://10.0.0.5:8000/v1"
    assert config["agents"]["defaults"]["model"]["primary"] == "custom/llama3"


def test_a_keyless_endpoint_gets_no_api_key(tmp_path: Path) -> None:
    # Given / When the offline model (it checks no key)
    provider = config_for(OFFLINE, tmp_path)["models"]["providers"]["offline"]

    # Then no placeholder key is invented
    assert "apiKey" not in provider


def test_config_is_plain_json(tmp_path: Path) -> None:
    # Given / When / Then: every value survives a JSON round trip (the gateway reads JSON5, a superset)
    config = config_for(OFFLINE, tmp_path)
    assert json.loads(json.dumps(config)) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": "gemini", "model_id": "x"}, "unknown model provider"),
        ({"provider": "openai", "model_id": "  "}, "model_id"),
        ({"provider": "offline", "model_id": "offline-model"}, "base_url"),
        ({"provider": "openai-compatible", "model_id": "m"}, "base_url"),
        ({"provider": "bedrock", "model_id": "m"}, "unknown model provider"),
        ({"provider": "anthropic", "model_id": "m", "api_key_env": "anthropic key"}, "api_key_env"),
    ],
)
def test_bad_model_choices_are_refused(kwargs: dict[str, Any], message: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match=message):
        ModelChoice(**kwargs)


# -------------------------------------------------------------------------------------- environment


def child_env(base: dict[str, str], secrets: dict[str, str] | None = None, **kwargs: Any) -> dict[str, str]:
    return gateway_environment(
        base,
        home=Path("/state/home"),
        cache_dir=Path("/state/cache"),
        token="t0k3n-secret",
        secrets=secrets or {},
        **kwargs,
    )


def test_channel_and_agent_tokens_never_reach_the_gateway() -> None:
    # Given a bridge environment and secrets that include the Telegram bot token and the agent token
    base = {
        "PATH": "/usr/bin",
        "TELEGRAM_BOT_TOKEN": "123:telegram-in-env",
        "TELEGRAM_WEBHOOK_SECRET": "hook",
        "AGENT_TOKEN": "agent-secret",
        "INBOX_TABLE": "test-Inbox",
        "ANTHROPIC_API_KEY": "sk-from-bridge-env",
    }
    secrets = {
        "TELEGRAM_BOT_TOKEN": "123:telegram-in-secrets",
        "ANTHROPIC_API_KEY": "sk-ant-123",
        "WEBHOOK_SECRET": "w",
    }

    # When the child's environment is built
    env = child_env(base, secrets)

    # Then only allow-listed names and model keys are there
    assert not any(name.startswith("TELEGRAM") for name in env)
    values = set(env.values())
    assert "123:telegram-in-env" not in values and "123:telegram-in-secrets" not in values
    assert "agent-secret" not in values and "hook" not in values and "w" not in values
    assert "INBOX_TABLE" not in env
    # and the model key comes from the secrets, not from whatever the bridge's environment held
    assert env["ANTHROPIC_API_KEY"] == "sk-ant-123"


def test_environment_sets_home_cache_token_and_headless_switches() -> None:
    # Given a base environment with its own HOME
    env = child_env({"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "TZ": "UTC"})

    # Then OpenClaw's state lives under our home, its cache in ours, and it knows the token
    assert env["HOME"] == env["OPENCLAW_HOME"] == "/state/home"
    assert env["XDG_CACHE_HOME"] == "/state/cache"
    assert env[GATEWAY_TOKEN_ENV] == "t0k3n-secret"
    assert (env["PATH"], env["LANG"], env["TZ"]) == ("/usr/bin", "C.UTF-8", "UTC")
    assert {
        name: env[name] for name in env if name.startswith("OPENCLAW_") and name not in ("OPENCLAW_HOME",)
    } == {
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_NO_RESPAWN": "1",
        "OPENCLAW_SKIP_CHANNELS": "1",
        "OPENCLAW_NO_AUTO_UPDATE": "1",
        "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",
        "OPENCLAW_SKIP_CRON": "1",
        GATEWAY_TOKEN_ENV: "t0k3n-secret",
    }


def test_the_task_roles_credentials_never_reach_the_gateway() -> None:
    # Given an ECS task environment
    base = {
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": "auth",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:4566",
        "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x",
    }

    # When the gateway's environment is built from it
    env = child_env(base)

    # Then no AWS variable passes (the agent runs shell commands: what it lacks it cannot leak), nor the
    # task's metadata endpoint
    assert not any(name.startswith("AWS_") for name in env)
    assert "ECS_CONTAINER_METADATA_URI_V4" not in env


# -------------------------------------------------------------------------------------- write_config


def test_write_config_is_owner_only_and_complete(tmp_path: Path) -> None:
    # Given a config and a path in a folder that does not exist yet
    path = tmp_path / "home" / ".openclaw" / "openclaw.json"
    config = config_for(OFFLINE, tmp_path)

    # When it is written
    write_config(path, config)

    # Then it reads back the same, only its owner can read it, and no temporary file is left behind
    assert json.loads(path.read_text()) == config
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["openclaw.json"]


def test_write_config_replaces_an_existing_file(tmp_path: Path) -> None:
    # Given an existing, readable-by-all config
    path = tmp_path / "openclaw.json"
    path.write_text('{"old": true}')
    path.chmod(0o644)

    # When a new one is written
    write_config(path, {"gateway": {"mode": "local"}})

    # Then the new content and mode replace the old
    assert json.loads(path.read_text()) == {"gateway": {"mode": "local"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_config_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    # Given a good config on disk
    path = tmp_path / "openclaw.json"
    write_config(path, {"gateway": {"mode": "local"}})

    # When writing something that cannot be serialised
    with pytest.raises(TypeError):
        write_config(path, {"bad": object()})

    # Then the gateway still sees the previous, complete file and no temporary file is left
    assert json.loads(path.read_text()) == {"gateway": {"mode": "local"}}
    assert [p.name for p in tmp_path.iterdir()] == ["openclaw.json"]


def test_the_gateway_gets_a_temporary_folder_of_its_own_when_given_one() -> None:
    # Given a bridge whose own TMPDIR is the machine's
    base = {"PATH": "/usr/bin", "TMPDIR": "/tmp"}

    # When the child's environment is built with and without a folder of its own
    own = child_env(base, tmp_dir=Path("/state/tmp"))
    inherited = child_env(base)

    # Then OpenClaw uses that folder, else the inherited one; with its own folder, Node's compile cache is
    # in it for every thread and helper, and the launcher is told not to re-execute itself to move it
    assert own["TMPDIR"] == "/state/tmp" and inherited["TMPDIR"] == "/tmp"
    assert own["NODE_COMPILE_CACHE"] == "/state/tmp/node-compile-cache"
    assert own["OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED"] == "1"
    assert "NODE_COMPILE_CACHE" not in inherited
