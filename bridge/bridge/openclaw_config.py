"""The OpenClaw gateway's openclaw.json and environment: headless, loopback-only, secrets by reference.

Every switch below was checked against the pinned gateway (docs/openclaw.md, Configuration, says why each):
it refuses unknown keys, so a typo here fails the boot instead of being silently ignored.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from serverless_openclaw.settings import SUPPORTED_PROVIDERS

ENDPOINT_PROVIDERS: Final = frozenset({"openai-compatible", "offline"})
"""Providers that are an OpenAI-style endpoint of our own: they need a base URL (MODEL_BASE_URL)."""

# Provider ids as OpenClaw knows them; anthropic and openai are its built-in providers.
_OPENCLAW_PROVIDER_ID: Final[dict[str, str]] = {
    "anthropic": "anthropic",
    "openai": "openai",
    "openai-compatible": "custom",
    "offline": "offline",
}
# The variable a built-in provider reads its key from when the config names none.
_DEFAULT_KEY_ENV: Final[dict[str, str]] = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
# The wire API of each built-in provider, needed when its base URL is overridden (a proxy, a gateway).
_BUILTIN_API: Final[dict[str, str]] = {"anthropic": "anthropic-messages", "openai": "openai-responses"}
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,127}")

GATEWAY_TOKEN_ENV: Final = "OPENCLAW_GATEWAY_TOKEN"
COMPILE_CACHE_FOLDER: Final = "node-compile-cache"
"""The folder under the gateway's TMPDIR that holds Node's compile cache (NODE_COMPILE_CACHE)."""

# What the child may inherit from the bridge's own environment. Everything else (the task role's AWS
# credentials, Telegram tokens, the agent token, table names, the bridge's settings) stays out: the agent
# can run shell commands and read its environment, so what it is not given it cannot leak.
_INHERITED: Final[frozenset[str]] = frozenset(
    {"PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
)
# Headless switches that only exist as environment variables (docs/openclaw.md, Configuration).
_HEADLESS_ENV: Final[dict[str, str]] = {
    "OPENCLAW_DISABLE_BONJOUR": "1",  # no mDNS advertising on the task's network
    "OPENCLAW_NO_RESPAWN": "1",  # never hand off to a detached child: our supervisor keeps the PID
    "OPENCLAW_SKIP_CHANNELS": "1",  # no Telegram/Discord transports: the bridge owns every channel
    "OPENCLAW_NO_AUTO_UPDATE": "1",  # no update check, telemetry ping or self-update
    "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",  # no login shell spawned to snapshot the environment
    "OPENCLAW_SKIP_CRON": "1",  # no scheduler: no heartbeat turns, no dreaming sweeps, no surprise cost
}


@dataclass(frozen=True)
class ModelChoice:
    """Which model the agent uses: provider, model id, and where its endpoint and key come from."""

    provider: str  # one of SUPPORTED_PROVIDERS (checked at construction; plain str so settings can flow in)
    model_id: str
    base_url: str | None = None
    api_key_env: str | None = None

    def __post_init__(self) -> None:
        if self.provider not in SUPPORTED_PROVIDERS:
            raise ValueError(
                f"unknown model provider {self.provider!r}; expected one of {', '.join(SUPPORTED_PROVIDERS)}"
            )
        if not self.model_id.strip():
            raise ValueError("model_id must not be empty")
        if self.provider in ENDPOINT_PROVIDERS and not self.base_url:
            raise ValueError(f"provider {self.provider!r} needs a base_url")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            raise ValueError(f"api_key_env must be an upper-case variable name, got {self.api_key_env!r}")

    @property
    def provider_id(self) -> str:
        """The provider id OpenClaw uses for this choice (e.g. "custom" for openai-compatible)."""
        return _OPENCLAW_PROVIDER_ID[self.provider]

    @property
    def model_ref(self) -> str:
        """The "<provider>/<model>" reference OpenClaw's agents.defaults.model.primary expects."""
        return f"{self.provider_id}/{self.model_id}"


def gateway_command(node: str, entry: str, port: int) -> list[str]:
    """The command that runs the gateway in the foreground, listening on loopback only."""
    return [node, entry, "gateway", "run", "--port", str(port), "--bind", "loopback"]


def build_config(choice: ModelChoice, *, port: int, workspace: Path, log_file: Path) -> dict[str, Any]:
    """The openclaw.json for this model choice: headless, loopback, token auth, no channels."""
    return {
        "gateway": {
            "mode": "local",  # without it the gateway refuses to start (treated as an unconfigured host)
            "port": port,
            "bind": "loopback",  # only the bridge in the same task may connect; nothing is exposed
            # The token is read from the child's environment (OPENCLAW_GATEWAY_TOKEN), so it never sits in a
            # file or in S3. Not even as a "${…}" reference: OpenClaw fingerprints the resolved config to know
            # whether its state migrations already ran on this home, and a fresh token per boot made every
            # restored home look new (2-3 s of migrations at every start; docs/openclaw.md).
            "auth": {"mode": "token"},
            # No browser UI on the port (GET / is a 404) and no 54 MB asset cache in the state dir.
            "controlUi": {"enabled": False},
        },
        "models": _models_section(choice),
        "agents": {
            "defaults": {
                "model": {"primary": choice.model_ref},
                "skipBootstrap": True,  # no BOOTSTRAP.md/SOUL.md seeding and no first-run "birth" ritual
                "heartbeat": {"every": "0m"},  # no periodic agent turns: they cost model calls while idle
                "workspace": str(workspace),  # the restored, backed-up folder, not ~/.openclaw/workspace
            }
        },
        "plugins": {
            "entries": {
                # Memory "dreaming" schedules background consolidation turns (model calls) on a cron job.
                "memory-core": {"config": {"dreaming": {"enabled": False}}},
            }
        },
        "update": {"checkOnStart": False},  # no version check against telemetry.openclaw.ai at boot
        "discovery": {"mdns": {"mode": "off"}},  # no Bonjour advertising (OPENCLAW_DISABLE_BONJOUR too)
        # A known file in the state dir instead of /tmp/openclaw/openclaw-<date>.log.
        "logging": {"file": str(log_file)},
        # No "channels" key at all: the bridge owns Telegram and the web; OpenClaw must never poll a bot.
    }


def _models_section(choice: ModelChoice) -> dict[str, Any]:
    """models.*: built-in providers merged with the catalog, or only our own endpoint for custom ones."""
    section: dict[str, Any] = {
        # "replace" for our own endpoints: no implicit providers discovered from the environment, only the
        # configured model; "merge" for built-ins, whose model rows come from OpenClaw's bundled catalog.
        "mode": "replace" if choice.provider in ENDPOINT_PROVIDERS else "merge",
        "catalogRefresh": {"enabled": False},  # no hosted catalog fetch at boot and every 6 h
    }
    section["providers"] = {choice.provider_id: _provider_entry(choice)}
    return section


def _provider_entry(choice: ModelChoice) -> dict[str, Any]:
    """The models.providers entry of the chosen provider."""
    if choice.provider in ("anthropic", "openai"):
        key_env = choice.api_key_env or _DEFAULT_KEY_ENV[choice.provider]
        entry: dict[str, Any] = {"apiKey": _env_ref(key_env)}
        if choice.base_url:
            # An entry with a baseUrl but no api is taken for an OpenAI chat-completions server (observed:
            # Anthropic traffic went to {baseUrl}/chat/completions), so name the provider's own API.
            entry["baseUrl"] = choice.base_url
            entry["api"] = _BUILTIN_API[choice.provider]
        return entry
    # openai-compatible and offline: our own OpenAI-style /chat/completions endpoint.
    entry = {
        "baseUrl": choice.base_url,
        "api": "openai-completions",
        "models": [_model_row(choice, context_window=128_000, max_tokens=4096)],
    }
    # Without a key the gateway sends no Authorization header (verified with the offline model).
    if choice.api_key_env:
        entry["apiKey"] = _env_ref(choice.api_key_env)
    return entry


def _model_row(choice: ModelChoice, *, context_window: int, max_tokens: int) -> dict[str, Any]:
    """One explicit model catalog row."""
    return {
        "id": choice.model_id,
        "name": choice.model_id,
        "reasoning": False,
        "input": ["text"],
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
        "contextWindow": context_window,
        "maxTokens": max_tokens,
    }


def _env_ref(name: str) -> str:
    """A "${NAME}" substitution: OpenClaw resolves it from its environment, so no key is ever written."""
    return "${" + name + "}"


def gateway_environment(
    base_env: Mapping[str, str],
    *,
    home: Path,
    cache_dir: Path,
    token: str,
    secrets: Mapping[str, str],
    tmp_dir: Path | None = None,
) -> dict[str, str]:
    """The gateway child's environment: an allow-list of base_env, headless switches, token and model keys.

    `tmp_dir` becomes its TMPDIR (else it inherits ours), with Node's compile cache in it, which the bridge
    seeds with the prepared one (compile_cache.py).
    """
    env = {name: value for name, value in base_env.items() if name in _INHERITED}
    if tmp_dir is not None:
        env.update(
            {
                "TMPDIR": str(tmp_dir),
                # Set for the process, Node's compile cache also serves the gateway's worker threads and
                # helper processes (enabled from code, as OpenClaw does by default, it serves only the main
                # thread). The second variable tells openclaw.mjs the cache is where it wants it; without it
                # the launcher re-executes itself in a second Node to move the cache into a sub-folder.
                "NODE_COMPILE_CACHE": str(tmp_dir / COMPILE_CACHE_FOLDER),
                "OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED": "1",
            }
        )
    env.update(_HEADLESS_ENV)
    env.update(
        {
            "HOME": str(home),
            "OPENCLAW_HOME": str(home),
            # A read-only SQLite helper writes under $XDG_CACHE_HOME/openclaw, not under OPENCLAW_HOME.
            "XDG_CACHE_HOME": str(cache_dir),
            GATEWAY_TOKEN_ENV: token,
        }
    )
    # Only model-provider keys; a TELEGRAM_BOT_TOKEN or agent token handed in here is dropped.
    env.update({name: value for name, value in secrets.items() if _is_model_key(name)})
    return env


def _is_model_key(name: str) -> bool:
    """A model provider's API key variable (ANTHROPIC_API_KEY, OPENAI_API_KEY, …)."""
    return name.endswith("_API_KEY") and bool(_ENV_NAME.fullmatch(name)) and not name.startswith("TELEGRAM")


def write_config(path: Path, config: Mapping[str, Any]) -> None:
    """Write openclaw.json atomically (temporary file then rename), readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The gateway hot-reloads the file on change, so it must never see a half-written one.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(config, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
