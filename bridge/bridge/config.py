"""The bridge's configuration, built once from the task's environment at start-up (fails fast)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bridge.openclaw_config import ENDPOINT_PROVIDERS
from serverless_openclaw.config import ConfigError, Tables, integer, number, require, warm_idle_timeout
from serverless_openclaw.settings import SUPPORTED_PROVIDERS, UNAVAILABLE_PROVIDERS

DEFAULT_MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "gpt-5",
    "openai-compatible": "default",
    "offline": "offline-model",
}
"""Model used when neither MODEL_ID nor the user's setting names one."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Everything the bridge needs to know about its task, its user and its collaborators."""

    user_id: str
    tables: Tables
    data_bucket: str
    websocket_url: str
    websocket_endpoint: str
    metadata_uri: str
    secrets_prefix: str
    model_provider: str
    model_id: str | None
    model_base_url: str | None
    state_root: Path
    openclaw_node: str
    openclaw_entry: str
    gateway_port: int
    http_port: int
    heartbeat_interval: float
    heartbeat_stale_seconds: float
    warm_idle_timeout_minutes: float
    claim_lease_seconds: int
    run_timeout: float
    max_message_attempts: int
    shutdown_grace: float
    backup_debounce: float
    backup_interval: float
    metrics_namespace: str
    telegram_api_base: str
    telegram_token_parameter: str

    @property
    def openclaw_home(self) -> Path:
        """OPENCLAW_HOME: OpenClaw keeps everything under <home>/.openclaw."""
        return self.state_root / "home"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BridgeConfig:
        """Read the task's environment; ConfigError names the first missing or malformed variable."""
        env = os.environ if env is None else env
        provider, base_url = _model_provider(env)
        return cls(
            user_id=require(env, "USER_ID"),
            tables=Tables.from_env(env),
            data_bucket=require(env, "DATA_BUCKET"),
            websocket_url=require(env, "WEBSOCKET_URL"),
            websocket_endpoint=require(env, "WEBSOCKET_MANAGEMENT_ENDPOINT").rstrip("/"),
            metadata_uri=require(env, "ECS_CONTAINER_METADATA_URI_V4").rstrip("/"),
            secrets_prefix=env.get("SECRETS_PREFIX", "").strip().rstrip("/"),
            model_provider=provider,
            model_id=_optional(env, "MODEL_ID"),
            model_base_url=base_url,
            state_root=Path(_text(env, "STATE_ROOT", "/data")),
            openclaw_node=_text(env, "OPENCLAW_NODE", "node"),
            openclaw_entry=_text(env, "OPENCLAW_ENTRY", "/opt/openclaw/node_modules/openclaw/openclaw.mjs"),
            gateway_port=integer(env, "OPENCLAW_PORT", 18789, minimum=1),
            http_port=integer(env, "BRIDGE_PORT", 8080, minimum=0),
            heartbeat_interval=number(env, "HEARTBEAT_INTERVAL_SECONDS", 30, minimum=1),
            # The control plane's staleness limit: past it the task may have been replaced (fencing).
            heartbeat_stale_seconds=number(env, "HEARTBEAT_STALE_SECONDS", 180, minimum=10),
            # A task woken without a message stops itself when none came within this (bridge/warm_idle.py).
            warm_idle_timeout_minutes=warm_idle_timeout(env),
            claim_lease_seconds=integer(env, "CLAIM_LEASE_SECONDS", 120, minimum=10),
            # Providers are retried by OpenClaw for ~90 s before it reports an error: never cut a run short.
            run_timeout=number(env, "RUN_TIMEOUT_SECONDS", 300, minimum=180),
            max_message_attempts=integer(env, "MAX_MESSAGE_ATTEMPTS", 3, minimum=1),
            # ECS gives the task 120 s after SIGTERM; the rest is for the final backup and release.
            shutdown_grace=number(env, "SHUTDOWN_GRACE_SECONDS", 80, minimum=0),
            backup_debounce=number(env, "BACKUP_DEBOUNCE_SECONDS", 5, minimum=0),
            backup_interval=number(env, "BACKUP_INTERVAL_SECONDS", 60, minimum=5),
            metrics_namespace=_text(env, "POWERTOOLS_METRICS_NAMESPACE", "ServerlessOpenClaw"),
            # The task definition always names the Bot API and the token's parameter (the token itself is
            # read from SSM at boot and never in any environment); replies stay web-only while it is unset.
            telegram_api_base=require(env, "TELEGRAM_API_BASE"),
            telegram_token_parameter=require(env, "TELEGRAM_BOT_TOKEN_PARAMETER"),
        )


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    """A variable's value without surrounding blanks; `default` when it is unset or blank."""
    return env.get(name, "").strip() or default


def _optional(env: Mapping[str, str], name: str) -> str | None:
    """A variable's value without surrounding blanks; None when it is unset or blank."""
    return env.get(name, "").strip() or None


def _model_provider(env: Mapping[str, str]) -> tuple[str, str | None]:
    """MODEL_PROVIDER (default anthropic) and MODEL_BASE_URL, which the endpoint providers require."""
    provider = _text(env, "MODEL_PROVIDER", "anthropic")
    if provider in UNAVAILABLE_PROVIDERS:
        raise ConfigError(f"MODEL_PROVIDER={provider}: {UNAVAILABLE_PROVIDERS[provider]}")
    if provider not in SUPPORTED_PROVIDERS:
        raise ConfigError(f"MODEL_PROVIDER must be one of {', '.join(SUPPORTED_PROVIDERS)}, got {provider!r}")
    base_url = _optional(env, "MODEL_BASE_URL")
    if provider in ENDPOINT_PROVIDERS and not base_url:
        raise ConfigError(f"MODEL_BASE_URL is required for MODEL_PROVIDER={provider}")
    return provider, base_url
