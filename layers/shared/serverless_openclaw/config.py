"""Environment models: each function and the bridge build theirs once at start-up and fail fast."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed."""


def require(env: Mapping[str, str], name: str) -> str:
    """The variable's value; ConfigError naming it when it is missing or blank."""
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is required but not set")
    return value


def _parsed(env: Mapping[str, str], name: str, default: float, minimum: float, kind: type[float]) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"environment variable {name} must be {noun}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"environment variable {name} must be at least {minimum:g}, got {raw}")
    return value


def integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """A whole-number variable with a default; ConfigError naming it when malformed or too small."""
    return int(_parsed(env, name, default, minimum, int))


def number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0) -> float:
    """A numeric variable (seconds, say) with a default; ConfigError naming it when malformed or too small."""
    return _parsed(env, name, default, minimum, float)


@dataclass(frozen=True, slots=True)
class Tables:
    """Names of the six DynamoDB tables (docs/architecture.md, Data model)."""

    task_state: str
    connections: str
    inbox: str
    conversations: str
    settings: str
    idempotency: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Tables:
        """Read the table names from TASK_STATE_TABLE, CONNECTIONS_TABLE, … ."""
        return cls(
            task_state=require(env, "TASK_STATE_TABLE"),
            connections=require(env, "CONNECTIONS_TABLE"),
            inbox=require(env, "INBOX_TABLE"),
            conversations=require(env, "CONVERSATIONS_TABLE"),
            settings=require(env, "SETTINGS_TABLE"),
            idempotency=require(env, "IDEMPOTENCY_TABLE"),
        )


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Timing rules of the agent task lifecycle."""

    idle_timeout_minutes: int = 15
    start_deadline_seconds: int = 300
    heartbeat_stale_seconds: int = 180
    max_start_attempts: int = 3
    start_eta_seconds: int = 45
    stopping_deadline_seconds: int = 300
    warm_idle_timeout_minutes: float = 3.0
    """How long an agent woken without a message (a `warm` frame, Telegram /start) waits for one."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LifecycleConfig:
        """Read the lifecycle timings, each with a default."""
        return cls(
            idle_timeout_minutes=integer(env, "IDLE_TIMEOUT_MINUTES", 15, minimum=1),
            start_deadline_seconds=integer(env, "START_DEADLINE_SECONDS", 300, minimum=10),
            heartbeat_stale_seconds=integer(env, "HEARTBEAT_STALE_SECONDS", 180, minimum=10),
            max_start_attempts=integer(env, "MAX_START_ATTEMPTS", 3, minimum=1),
            start_eta_seconds=integer(env, "START_ETA_SECONDS", 45, minimum=1),
            stopping_deadline_seconds=integer(env, "STOPPING_DEADLINE_SECONDS", 300, minimum=10),
            warm_idle_timeout_minutes=warm_idle_timeout(env),
        )


def warm_idle_timeout(env: Mapping[str, str]) -> float:
    """WARM_IDLE_TIMEOUT_MINUTES (default 3; fractions allowed, so tests can make it seconds)."""
    return number(env, "WARM_IDLE_TIMEOUT_MINUTES", 3.0, minimum=0.05)


@dataclass(frozen=True, slots=True)
class LaunchConfig:
    """Where and how the bridge task is started on ECS."""

    cluster: str
    task_definition: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    container_name: str = "bridge"
    cpu_units: int = 1024
    """The task definition's size (TASK_CPU, TASK_MEMORY): what a minute of it costs (task_prices.py)."""
    memory_mib: int = 2048

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LaunchConfig:
        """Read ECS_CLUSTER, TASK_DEFINITION, TASK_SUBNETS, TASK_SECURITY_GROUP, TASK_CONTAINER_NAME."""
        subnets = tuple(s.strip() for s in require(env, "TASK_SUBNETS").split(",") if s.strip())
        groups = tuple(s.strip() for s in require(env, "TASK_SECURITY_GROUP").split(",") if s.strip())
        return cls(
            cluster=require(env, "ECS_CLUSTER"),
            task_definition=require(env, "TASK_DEFINITION"),
            subnets=subnets,
            security_groups=groups,
            container_name=env.get("TASK_CONTAINER_NAME", "").strip() or "bridge",
            cpu_units=integer(env, "TASK_CPU", 1024, minimum=256),
            memory_mib=integer(env, "TASK_MEMORY", 2048, minimum=512),
        )


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """The Cognito user pool whose ID tokens open a client connection."""

    issuer: str
    client_id: str
    jwks_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuthConfig:
        """Read COGNITO_ISSUER, COGNITO_CLIENT_ID and optionally COGNITO_JWKS_URL."""
        issuer = require(env, "COGNITO_ISSUER").rstrip("/")
        jwks = env.get("COGNITO_JWKS_URL", "").strip() or f"{issuer}/.well-known/jwks.json"
        return cls(issuer=issuer, client_id=require(env, "COGNITO_CLIENT_ID"), jwks_url=jwks)


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """Which Bot API to call, where the bot's secrets live (SSM names), and who may use the agent unlinked."""

    token_parameter: str
    secret_parameter: str
    api_base: str
    allowed_user_ids: frozenset[int] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TelegramConfig:
        """Read TELEGRAM_BOT_TOKEN_PARAMETER, TELEGRAM_WEBHOOK_SECRET_PARAMETER, TELEGRAM_API_BASE and the
        optional TELEGRAM_ALLOWED_USER_IDS (only the webhook's environment has it)."""
        return cls(
            token_parameter=require(env, "TELEGRAM_BOT_TOKEN_PARAMETER"),
            secret_parameter=require(env, "TELEGRAM_WEBHOOK_SECRET_PARAMETER"),
            api_base=require(env, "TELEGRAM_API_BASE"),
            allowed_user_ids=parse_allowlist(env.get("TELEGRAM_ALLOWED_USER_IDS", "")),
        )


def parse_allowlist(raw: str) -> frozenset[int]:
    """Telegram user ids from a comma- or space-separated list; ConfigError naming a bad entry."""
    if not raw.strip():
        return frozenset()  # every function but the webhook: no pattern compiled on their cold start
    ids: set[int] = set()
    for entry in re.split(r"[,\s]+", raw.strip()):
        if not entry:
            continue
        if not re.fullmatch(r"[0-9]{1,20}", entry):
            raise ConfigError(f"TELEGRAM_ALLOWED_USER_IDS: {entry!r} is not a numeric Telegram user id")
        ids.add(int(entry))
    return frozenset(ids)


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    """Everything a control-plane function needs except auth: tables, timings, ECS, the WS endpoint and
    the Telegram bot (every function may tell a Telegram user that their agent could not start)."""

    tables: Tables
    lifecycle: LifecycleConfig
    launch: LaunchConfig
    websocket_endpoint: str
    telegram: TelegramConfig

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControlPlaneConfig:
        """Build from the process environment (or the given mapping)."""
        env = os.environ if env is None else env
        return cls(
            tables=Tables.from_env(env),
            lifecycle=LifecycleConfig.from_env(env),
            launch=LaunchConfig.from_env(env),
            websocket_endpoint=require(env, "WEBSOCKET_MANAGEMENT_ENDPOINT").rstrip("/"),
            telegram=TelegramConfig.from_env(env),
        )
