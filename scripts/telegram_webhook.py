"""Connect a Telegram bot to a deployed stack: store its token and webhook secret, register the webhook.

    python scripts/telegram_webhook.py --stack my-openclaw              # verify, store, setWebhook
    python scripts/telegram_webhook.py --stack my-openclaw --status     # getWebhookInfo
    python scripts/telegram_webhook.py --stack my-openclaw --delete     # deleteWebhook (SSM untouched)
    python scripts/telegram_webhook.py --endpoints .local/endpoints.json  # the local stack instead

The token comes from TELEGRAM_BOT_TOKEN, a hidden prompt, or what SSM already holds; never from the command
line (argv is visible in `ps`), and it is never printed. It is checked with getMe before anything is stored.
Both values go to SSM as SecureStrings (/<stack>/secrets/telegram-bot-token and …/telegram-webhook-secret)
before setWebhook, so a failed registration can simply be run again. The webhook URL is the stack's
`TelegramWebhookUrl` output. Exit codes: 0 done, 1 Telegram or AWS failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

# Runnable as `python scripts/telegram_webhook.py` from anywhere: the shared package lives in the Lambda
# layer's directory, not in site-packages, and scripts/aws_errors.py beside this file.
_REPO = Path(__file__).resolve().parent.parent
for _path in (str(_REPO / "layers" / "shared"), str(_REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)
if __name__ == "__main__":
    # The shared package logs JSON lines for CloudWatch; on a terminal this script's own messages say it all.
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")


from scripts.aws_errors import Failure, UsageError, aws_errors, exit_code  # noqa: E402
from scripts.stacks import (  # noqa: E402
    add_stack_arguments,
    check_stack_name,
    deployed_session,
    local_endpoints,
    local_session,
    stack_outputs,
)
from serverless_openclaw.aws.parameters import read_secure  # noqa: E402
from serverless_openclaw.telegram import DEFAULT_API_BASE, TelegramClient, TelegramError  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ssm import SSMClient

TOKEN_PATTERN = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{20,}")
"""Loosely what @BotFather hands out: the bot's numeric id, a colon, a long URL-safe string."""

SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
"""What Telegram accepts as a webhook `secret_token`."""

WEBHOOK_OUTPUT = "TelegramWebhookUrl"
ALLOWED_UPDATES = ["message"]
WEBHOOK_CONNECTIONS = 1
"""Telegram's `max_connections`: one request at a time, so a chat's messages reach the webhook (and the
Inbox) in the order they were sent. Telegram may deliver out of order over parallel connections; one
person's bot never needs the throughput (docs/decisions.md)."""
"""The only kind of update the webhook handles; Telegram does not even send the others."""


# --------------------------------------------------------------------------------------------------------
# Where the stack lives
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A stack: where its secrets are stored, where Telegram must post updates, which Bot API to call."""

    stack: str
    api_base: str
    ssm: SSMClient
    webhook_url: Callable[[], str]
    """Read on demand: only registering and --status need it (and, for a deployed stack, CloudFormation)."""

    @property
    def token_parameter(self) -> str:
        """SSM name of the bot token (what the functions' TELEGRAM_BOT_TOKEN_PARAMETER points at)."""
        return f"/{self.stack}/secrets/telegram-bot-token"

    @property
    def secret_parameter(self) -> str:
        """SSM name of the webhook secret (TELEGRAM_WEBHOOK_SECRET_PARAMETER)."""
        return f"/{self.stack}/secrets/telegram-webhook-secret"


def resolve_api_base(flag: str | None, env: Mapping[str, str], from_endpoints: str | None = None) -> str:
    """--api-base, else TELEGRAM_API_BASE, else the local stack's simulator, else Telegram itself."""
    for candidate in (flag, env.get("TELEGRAM_API_BASE"), from_endpoints):
        if candidate and candidate.strip():
            return candidate.strip()
    return DEFAULT_API_BASE


def deployed_target(stack: str, region: str | None, api_base: str) -> Target:
    """A stack deployed to AWS: credentials, region and endpoints as boto3 finds them."""
    check_stack_name(stack)
    session = deployed_session(region)
    with aws_errors():
        ssm = session.client("ssm")
        cloudformation = session.client("cloudformation")
    return Target(
        stack=stack,
        api_base=api_base,
        ssm=ssm,
        webhook_url=lambda: stack_webhook_url(cloudformation, stack),
    )


def stack_webhook_url(cloudformation: CloudFormationClient, stack: str) -> str:
    """The stack's TelegramWebhookUrl output."""
    url = stack_outputs(cloudformation, stack).get(WEBHOOK_OUTPUT)
    if url:
        return url
    raise UsageError(
        f"stack {stack} has no {WEBHOOK_OUTPUT} output: deploy a template with the Telegram route"
    )


def local_target(path: Path, region: str | None, api_base_flag: str | None, env: Mapping[str, str]) -> Target:
    """The local stack described by endpoints.json: SSM on its moto server, no CloudFormation."""
    endpoints = local_endpoints(path, "telegramWebhookUrl")
    session = local_session(endpoints, region, env)
    try:
        with aws_errors():
            ssm = session.client("ssm", endpoint_url=str(endpoints["awsEndpoint"]))
    except ValueError:  # botocore's "Invalid endpoint"
        raise UsageError(f"{path}: awsEndpoint is not a URL") from None
    webhook_url = str(endpoints["telegramWebhookUrl"])
    return Target(
        stack=str(endpoints["stackName"]),
        api_base=resolve_api_base(api_base_flag, env, endpoints.get("telegramApiBase")),
        ssm=ssm,
        webhook_url=lambda: webhook_url,
    )


# --------------------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------------------


def read_parameter(ssm: SSMClient, name: str) -> str | None:
    """A SecureString's value; None when it was never stored."""
    with aws_errors():
        return read_secure(ssm, name)


def store_parameter(ssm: SSMClient, name: str, value: str, description: str) -> None:
    """Write a SecureString (a new version when it exists)."""
    with aws_errors(value):
        ssm.put_parameter(
            Name=name, Value=value, Type="SecureString", Overwrite=True, Description=description
        )


def obtain_token(
    target: Target,
    env: Mapping[str, str],
    *,
    interactive: bool,
    prompt: Callable[[str], str] | None = None,
) -> str:
    """The bot token: TELEGRAM_BOT_TOKEN, else a hidden prompt (in a terminal), else the one stored in SSM."""
    from_env = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if from_env:
        return check_token_format(from_env)
    if interactive:
        typed = (prompt or getpass.getpass)(
            "Telegram bot token from @BotFather (hidden; Enter keeps the stored one): "
        ).strip()
        if typed:
            return check_token_format(typed)
    stored = read_parameter(target.ssm, target.token_parameter)
    if stored:
        return check_token_format(stored)
    raise UsageError(
        "no bot token: set TELEGRAM_BOT_TOKEN or run in a terminal to be asked for it "
        f"(nothing is stored in {target.token_parameter} yet)"
    )


def check_token_format(token: str) -> str:
    """The token when it looks like one from @BotFather; UsageError (without the token) otherwise."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise UsageError(
            "that does not look like a bot token from @BotFather "
            "(expected digits, a colon, then at least 20 letters, digits, '_' or '-')"
        )
    return token


def webhook_secret(target: Target, *, rotate: bool) -> tuple[str, bool]:
    """The secret Telegram will send with every update, and whether it is new (stored one kept by default)."""
    if not rotate:
        stored = read_parameter(target.ssm, target.secret_parameter)
        if stored and SECRET_PATTERN.fullmatch(stored):
            return stored, False
    secret = secrets.token_urlsafe(48)
    if not SECRET_PATTERN.fullmatch(secret):  # token_urlsafe's alphabet is Telegram's; this guards a change
        raise Failure("generated webhook secret has characters Telegram does not accept")
    return secret, True


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


def verify_token(telegram: TelegramClient) -> str:
    """The bot's @username, asking Telegram (getMe) whether the token is valid."""
    try:
        me = telegram.call("getMe")
    except TelegramError as exc:
        if exc.status == 401:
            raise UsageError(
                f"Telegram refused the token ({exc.description}): check it with @BotFather"
            ) from None
        raise
    return str(me.get("username") or me.get("first_name") or me.get("id"))


def register(target: Target, token: str, *, rotate_secret: bool, drop_pending: bool, out: TextIO) -> None:
    """Verify the token, store token and secret in SSM, then point Telegram at the stack's webhook."""
    telegram = TelegramClient(token, api_base=target.api_base)
    username = verify_token(telegram)
    print(f"Telegram accepted the token of @{username}.", file=out)
    url = target.webhook_url()
    secret, new_secret = webhook_secret(target, rotate=rotate_secret)
    store_parameter(
        target.ssm, target.token_parameter, token, "Telegram bot token (scripts/telegram_webhook.py)"
    )
    store_parameter(
        target.ssm,
        target.secret_parameter,
        secret,
        "Telegram webhook secret_token (scripts/telegram_webhook.py)",
    )
    print(f"Stored {target.token_parameter} and {target.secret_parameter} (SecureString).", file=out)
    try:
        telegram.call(
            "setWebhook",
            url=url,
            secret_token=secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=WEBHOOK_CONNECTIONS,
            drop_pending_updates=drop_pending,
        )
    except TelegramError as exc:
        raise Failure(
            f"Telegram refused setWebhook: {exc.description} (SSM is updated already; run again to retry)"
        ) from None
    state = "a new" if new_secret else "the stored"
    print(f"Webhook registered: {url} (updates: {', '.join(ALLOWED_UPDATES)}; {state} secret).", file=out)


def show_status(target: Target, token: str, *, out: TextIO, err: TextIO) -> None:
    """Print what Telegram knows about the webhook (getWebhookInfo) and warn when it is not the stack's."""
    info = TelegramClient(token, api_base=target.api_base).call("getWebhookInfo")
    url = str(info.get("url") or "")
    print(f"url:                  {url or '(none)'}", file=out)
    print(f"pending_update_count: {info.get('pending_update_count', 0)}", file=out)
    if info.get("last_error_date"):
        print(f"last_error_date:      {_iso(info['last_error_date'])}", file=out)
    if info.get("last_error_message"):
        print(f"last_error_message:   {info['last_error_message']}", file=out)
    allowed = info.get("allowed_updates")
    print(
        f"allowed_updates:      {', '.join(allowed) if allowed else '(not set: Telegram default)'}", file=out
    )
    try:
        expected = target.webhook_url()
    except UsageError as exc:
        print(f"warning: cannot compare with the stack: {exc}", file=err)
        return
    if not url:
        print(
            f"warning: no webhook is registered; the stack expects {expected} (run without --status)",
            file=err,
        )
    elif url != expected:
        print(f"warning: the registered url is not the stack's {WEBHOOK_OUTPUT} ({expected})", file=err)


def _iso(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(int(timestamp), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError):
        return str(timestamp)


def delete(target: Target, token: str, *, drop_pending: bool, out: TextIO) -> None:
    """Remove the webhook (deleteWebhook); the token and secret stay in SSM."""
    TelegramClient(token, api_base=target.api_base).call("deleteWebhook", drop_pending_updates=drop_pending)
    print(
        "Webhook deleted: Telegram no longer posts updates to the stack. "
        f"{target.token_parameter} and {target.secret_parameter} are left in SSM.",
        file=out,
    )


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (there is deliberately no option for the token)."""
    parser = argparse.ArgumentParser(
        prog="telegram_webhook.py",
        description="Store a Telegram bot's token and webhook secret in SSM; register the stack's webhook.",
        epilog="The token is read from TELEGRAM_BOT_TOKEN, a hidden prompt, or SSM; never from arguments.",
    )
    add_stack_arguments(parser, local=True)
    parser.add_argument("--api-base", help="Bot API base URL (default: TELEGRAM_API_BASE or Telegram's)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show getWebhookInfo; store nothing")
    action.add_argument("--delete", action="store_true", help="deleteWebhook; SSM is left as it is")
    parser.add_argument("--rotate-secret", action="store_true", help="replace the stored webhook secret")
    parser.add_argument("--drop-pending", action="store_true", help="discard updates Telegram still holds")
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would echo them, and a token pasted here must not be printed
        parser.error(
            f"{len(extra)} unrecognized argument(s), not shown in case one is a token; "
            "the token is read from TELEGRAM_BOT_TOKEN or a hidden prompt"
        )
    if args.rotate_secret and (args.status or args.delete):
        parser.error("--rotate-secret only applies when registering")
    return args


def build_target(args: argparse.Namespace, env: Mapping[str, str]) -> Target:
    """The stack the arguments name: deployed (--stack) or local (--endpoints)."""
    if args.endpoints is not None:
        return local_target(args.endpoints, args.region, args.api_base, env)
    return deployed_target(args.stack, args.region, resolve_api_base(args.api_base, env))


def run(args: argparse.Namespace, env: Mapping[str, str], *, interactive: bool) -> None:
    """Carry out the one command the arguments ask for."""
    target = build_target(args, env)
    token = obtain_token(target, env, interactive=interactive)
    if args.status:
        show_status(target, token, out=sys.stdout, err=sys.stderr)
    elif args.delete:
        delete(target, token, drop_pending=args.drop_pending, out=sys.stdout)
    else:
        register(
            target, token, rotate_secret=args.rotate_secret, drop_pending=args.drop_pending, out=sys.stdout
        )


def main(argv: list[str] | None = None) -> int:
    """Run the script; the process exit code."""
    args = parse_args(argv)

    def work() -> None:
        try:
            run(args, os.environ, interactive=sys.stdin is not None and sys.stdin.isatty())
        except TelegramError as exc:  # descriptions are Telegram's words; URLs (which hold the token) never
            if exc.status == 401:
                raise UsageError(f"Telegram refused the token ({exc.description})") from None
            status = f"{exc.status} " if exc.status else ""
            raise Failure(f"Telegram {exc.method} failed: {status}{exc.description}") from None

    return exit_code(work)


if __name__ == "__main__":
    raise SystemExit(main())
