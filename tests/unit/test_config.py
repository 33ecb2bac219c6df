"""Configuration is read once at start-up and a missing or malformed variable stops the function there."""

from __future__ import annotations

import pytest

from serverless_openclaw.config import ConfigError, ControlPlaneConfig
from tests.conftest import TEST_ENV


@pytest.mark.parametrize(
    "name", ["TELEGRAM_BOT_TOKEN_PARAMETER", "TELEGRAM_WEBHOOK_SECRET_PARAMETER", "TELEGRAM_API_BASE"]
)
def test_a_missing_telegram_variable_stops_start_up_and_is_named(name: str) -> None:
    # Given a function environment without one of the bot's variables (no stack-name fallback either)
    env = {k: v for k, v in TEST_ENV.items() if k != name}

    # When the function reads its configuration at start-up
    with pytest.raises(ConfigError) as refused:
        ControlPlaneConfig.from_env(env)

    # Then it fails there, naming the variable
    assert name in str(refused.value)


def test_the_telegram_configuration_is_read_with_the_rest() -> None:
    # Given the functions' environment, with the webhook's allowlist
    env = {**TEST_ENV, "TELEGRAM_ALLOWED_USER_IDS": "555, 777"}

    # When it is read
    telegram = ControlPlaneConfig.from_env(env).telegram

    # Then the bot's parameters, API and allowlist are exactly the ones given
    assert telegram.token_parameter == "/test/secrets/telegram-bot-token"
    assert telegram.secret_parameter == "/test/secrets/telegram-webhook-secret"
    assert telegram.api_base == "https://api.telegram.org"
    assert telegram.allowed_user_ids == frozenset({555, 777})


def test_functions_without_an_allowlist_allow_nobody_unlinked() -> None:
    # Given a function environment without TELEGRAM_ALLOWED_USER_IDS (only the webhook's has it)
    env = {k: v for k, v in TEST_ENV.items() if k != "TELEGRAM_ALLOWED_USER_IDS"}

    # When it is read, Then nobody is allowlisted
    assert ControlPlaneConfig.from_env(env).telegram.allowed_user_ids == frozenset()


def test_a_malformed_allowlist_entry_stops_start_up_and_is_named() -> None:
    # Given an allowlist with a username instead of a numeric id
    env = {**TEST_ENV, "TELEGRAM_ALLOWED_USER_IDS": "555,@ada"}

    # When it is read, Then start-up fails naming the variable and the entry
    with pytest.raises(ConfigError, match="TELEGRAM_ALLOWED_USER_IDS: '@ada'"):
        ControlPlaneConfig.from_env(env)
