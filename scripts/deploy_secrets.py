"""The deploy's secrets: the model provider's API key and the Telegram bot token, from the environment or a
hidden prompt, stored as SSM SecureStrings; kept in memory only, never printed or passed as an argument."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.secrets import API_KEY_PARAMETERS
from scripts import telegram_webhook as telegram
from scripts.aws_errors import UsageError
from scripts.deploy_answers import Answers, Console

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


@dataclass
class Secrets:
    """The secrets this run was given (kept in memory only, never printed)."""

    telegram_token: str | None = None
    stored: list[str] = field(default_factory=list)


def provider_key(
    ssm: SSMClient, answers: Answers, env: Mapping[str, str], console: Console, *, replace: bool
) -> str | None:
    """Store the provider's API key (environment or hidden prompt) unless SSM holds one; the name stored."""
    entry = API_KEY_PARAMETERS.get(answers.provider)
    if entry is None:
        return None  # the offline model needs no key
    name, env_name = f"/{answers.stack}/secrets/{entry[0]}", entry[1]
    if not replace and telegram.read_parameter(ssm, name):
        print(f"  {name} is stored already (--replace-secrets stores a new one)", file=console.out)
        return None
    value = env.get(env_name, "").strip()
    if not value and console.interactive:
        value = console.ask_hidden(f"{answers.provider} API key (hidden; stored in SSM as {name}): ").strip()
    if not value:
        raise UsageError(f"no {answers.provider} API key: set {env_name} (it is stored in SSM as {name})")
    telegram.store_parameter(ssm, name, value, f"{answers.provider} API key (scripts/deploy.py)")
    return name


def telegram_token(
    ssm: SSMClient, answers: Answers, env: Mapping[str, str], console: Console, *, replace: bool
) -> str | None:
    """A new bot token to register (environment or hidden prompt); None keeps Telegram as it is."""
    if answers.telegram is False and not replace and not env.get("TELEGRAM_BOT_TOKEN"):
        return None
    if not replace and telegram.read_parameter(ssm, f"/{answers.stack}/secrets/telegram-bot-token"):
        return None
    value = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not value and console.interactive:
        value = console.ask_hidden(
            "Telegram bot token from @BotFather (hidden; Enter for no Telegram bot): "
        ).strip()
    if not value and answers.telegram and not console.interactive:
        raise UsageError("no Telegram bot token: set TELEGRAM_BOT_TOKEN (or pass --no-telegram)")
    answers.telegram = bool(value)
    return telegram.check_token_format(value) if value else None


def gather_secrets(
    ssm: SSMClient, answers: Answers, env: Mapping[str, str], console: Console, replace: bool
) -> Secrets:
    """Ask for (and store) the model's key now, and the bot token: nothing is asked after the slow steps."""
    secrets = Secrets()
    stored = provider_key(ssm, answers, env, console, replace=replace)
    if stored:
        print(f"  stored {stored} (SecureString)", file=console.out)
        secrets.stored.append(stored)
    secrets.telegram_token = telegram_token(ssm, answers, env, console, replace=replace)
    return secrets
