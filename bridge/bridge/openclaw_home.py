"""OpenClaw's home for one boot: its folders, openclaw.json, a fresh gateway token and environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bridge import stand_in_model
from bridge.config import BridgeConfig
from bridge.openclaw_config import ModelChoice, build_config, gateway_environment, write_config
from bridge.stand_in_model import StandInModel


def gateway_tmp(cfg: BridgeConfig) -> Path:
    """The gateway's own TMPDIR, where its compile cache lives."""
    return cfg.state_root / "tmp"


def prepare(
    cfg: BridgeConfig, choice: ModelChoice, api_keys: dict[str, str], stand_in: StandInModel
) -> tuple[str, dict[str, str]]:
    """Write openclaw.json for `choice` (with the stand-in model beside it, for the first-turn rehearsal);
    the gateway's token and environment."""
    token = secrets.token_urlsafe(32)
    home = cfg.openclaw_home
    state_dir = home / ".openclaw"
    state_dir.mkdir(parents=True, exist_ok=True)
    (cfg.state_root / "cache").mkdir(parents=True, exist_ok=True)
    (cfg.state_root / "logs").mkdir(parents=True, exist_ok=True)
    config = build_config(
        choice,
        port=cfg.gateway_port,
        workspace=state_dir / "workspace",
        log_file=cfg.state_root / "logs" / "openclaw.log",
    )
    # Only a session moved to it explicitly runs there (rehearsal.py); the agent's model stays `choice`.
    config["models"]["providers"][stand_in_model.PROVIDER_ID] = stand_in_model.provider_entry(stand_in)
    write_config(state_dir / "openclaw.json", config)
    env = gateway_environment(
        os.environ,
        home=home,
        cache_dir=cfg.state_root / "cache",
        tmp_dir=gateway_tmp(cfg),
        token=token,
        secrets=api_keys,
    )
    return token, env
