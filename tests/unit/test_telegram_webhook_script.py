"""scripts/telegram_webhook.py: the bot's token and webhook secret land in SSM, Telegram posts to the stack.

Telegram is the local Bot API simulator on a loopback port; SSM and CloudFormation are moto in-process (the
`aws` fixture). The token must never reach stdout or stderr, whatever happens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from local.telegram import TelegramSimulator
from scripts import telegram_webhook as script
from serverless_openclaw.telegram import TelegramClient
from tests.local.servers import LoopbackServer, serve

TOKEN = "7000000001:AAH-local_test_token_0123456789abcdef"
STACK = "tg-test"
WEBHOOK_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/telegram"
TOKEN_PARAMETER = f"/{STACK}/secrets/telegram-bot-token"
SECRET_PARAMETER = f"/{STACK}/secrets/telegram-webhook-secret"


@pytest.fixture
def bot_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TelegramSimulator, LoopbackServer]]:
    """The Telegram simulator for a bot whose token is TOKEN; the script finds it via TELEGRAM_API_BASE."""
    simulator = TelegramSimulator(TOKEN)
    with serve(simulator.app) as server:
        monkeypatch.setenv("TELEGRAM_API_BASE", server.url)
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
        yield simulator, server


@pytest.fixture
def telegram(bot_api: tuple[TelegramSimulator, LoopbackServer]) -> TelegramSimulator:
    return bot_api[0]


def create_stack(name: str = STACK, webhook_url: str | None = WEBHOOK_URL) -> None:
    """A deployed stack as far as the script cares: one resource and (optionally) the webhook output."""
    body: dict[str, Any] = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    if webhook_url is not None:
        body["Outputs"] = {"TelegramWebhookUrl": {"Value": webhook_url}}
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(body))


@pytest.fixture
def stack(aws: dict[str, str]) -> str:
    """moto (from the shared `aws` fixture) holding a stack with the webhook output; no secrets stored yet."""
    create_stack()
    return STACK


def parameter(name: str) -> dict[str, Any] | None:
    """An SSM parameter as stored (decrypted), None when absent (own credentials: some tests drop them)."""
    ssm = boto3.client(
        "ssm", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    try:
        found: dict[str, Any] = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    except ssm.exceptions.ParameterNotFound:
        return None
    return found


def stored(name: str) -> str:
    found = parameter(name)
    assert found is not None, f"{name} was not stored"
    return str(found["Value"])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """main(argv): exit code, stdout, stderr; and the token appears in neither, not even in part."""
    code = script.main(list(argv))
    out, err = capsys.readouterr()
    assert_no_token(out + err)
    return code, out, err


def assert_no_token(text: str, token: str = TOKEN, window: int = 8) -> None:
    leaked = [token[i : i + window] for i in range(len(token) - window + 1) if token[i : i + window] in text]
    assert not leaked, f"part of the token was printed: {leaked[:1]}"


def names_called(simulator: TelegramSimulator) -> list[str]:
    return [method for method, _ in simulator.calls]


# ------------------------------------------------------------------------------------------------ register


def test_registering_stores_both_secrets_and_points_telegram_at_the_stack(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the script runs for a deployed stack with the token in the environment
    code, out, _ = run(capsys, "--stack", stack)

    # Then both values are SecureStrings, and Telegram posts to the stack's URL with the stored secret
    assert code == 0
    token, secret = parameter(TOKEN_PARAMETER), parameter(SECRET_PARAMETER)
    assert token is not None and secret is not None
    assert (token["Type"], token["Value"]) == ("SecureString", TOKEN)
    assert secret["Type"] == "SecureString"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret["Value"])
    assert telegram.webhook == {
        "url": WEBHOOK_URL,
        "secret_token": secret["Value"],
        "allowed_updates": ["message"],
        "max_connections": 1,
    }
    # The token was checked before anything else, and the person sees which bot they connected
    assert names_called(telegram) == ["getMe", "setWebhook"]
    assert "@openclaw_local_bot" in out and WEBHOOK_URL in out
    assert secret["Value"] not in out


def test_running_again_keeps_the_secret_and_rotate_secret_replaces_it(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a registered webhook
    assert run(capsys, "--stack", stack)[0] == 0
    first = telegram.webhook["secret_token"]

    # When the script runs again, the secret Telegram sends stays the same
    assert run(capsys, "--stack", stack)[0] == 0
    assert telegram.webhook["secret_token"] == first == stored(SECRET_PARAMETER)

    # When it runs with --rotate-secret, SSM and Telegram both get a new one
    assert run(capsys, "--stack", stack, "--rotate-secret")[0] == 0
    rotated = stored(SECRET_PARAMETER)
    assert rotated != first and telegram.webhook["secret_token"] == rotated


def test_drop_pending_is_passed_to_telegram(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--stack", stack, "--drop-pending")[0] == 0
    set_webhook = [params for method, params in telegram.calls if method == "setWebhook"]
    assert set_webhook[0]["drop_pending_updates"] is True


@pytest.mark.parametrize(
    "bad_token",
    [
        "not-a-token",
        "7000000001:short",  # too short after the colon
        "bot7000000001:AAH-local_test_token_0123456789",  # not digits before the colon
        "7000000001:AAH Zq9 Xw7 Kp3 Mn5 Vb8 Lr2 Hd4",  # spaces
    ],
)
def test_a_token_that_does_not_look_like_one_is_refused_before_anything_happens(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    bad_token: str,
) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bad_token)
    code = script.main(["--stack", stack])
    out, err = capsys.readouterr()
    # Then: a readable error without the value, no call to Telegram, nothing stored
    assert code == 2
    assert "does not look like a bot token" in err
    assert bad_token not in out + err
    assert_no_token(out + err, bad_token)
    assert telegram.calls == []
    assert parameter(TOKEN_PARAMETER) is None and parameter(SECRET_PARAMETER) is None


def test_a_token_telegram_refuses_stores_nothing(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a well-formed token of some other bot
    other = "7000000002:AAH-some_other_bots_token_987654321"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", other)
    code = script.main(["--stack", stack])
    out, err = capsys.readouterr()
    # Then Telegram's 401 is a configuration error; SSM and the webhook are untouched
    assert code == 2
    assert "Telegram refused the token" in err
    assert_no_token(out + err, other)
    assert parameter(TOKEN_PARAMETER) is None and parameter(SECRET_PARAMETER) is None
    assert telegram.webhook == {}


def test_a_token_on_the_command_line_is_refused_without_echoing_it(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse would print unrecognized arguments; the script must not, as one may be the token
    with pytest.raises(SystemExit) as exited:
        script.main(["--stack", stack, "--token", TOKEN])
    out, err = capsys.readouterr()
    assert exited.value.code == 2
    assert "TELEGRAM_BOT_TOKEN" in err
    assert_no_token(out + err)
    assert telegram.calls == []


def test_setwebhook_refused_after_storing_exits_1_and_a_rerun_can_retry(
    telegram: TelegramSimulator, aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack whose webhook URL Telegram will not accept (plain HTTP)
    create_stack(webhook_url="http://example.com/telegram")
    code, _, err = run(capsys, "--stack", STACK)
    # Then Telegram's own words are shown, and the secrets were stored first (the order we promise)
    assert code == 1
    assert "An HTTPS URL must be provided" in err
    assert "Traceback" not in err
    assert stored(TOKEN_PARAMETER) == TOKEN and stored(SECRET_PARAMETER)
    assert telegram.webhook == {}


def test_an_aws_refusal_exits_1_with_its_code_and_without_the_token(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an SSM that denies the write and (as AWS validation messages can) quotes the value it got
    def denying_ssm(client: Any) -> None:
        stubber = Stubber(client)
        stubber.add_client_error("get_parameter", "ParameterNotFound", "not found", 400)
        stubber.add_client_error(
            "put_parameter", "AccessDeniedException", f"not authorized to store value {TOKEN}", 400
        )
        stubber.activate()

    patch_clients(monkeypatch, on_ssm=denying_ssm)
    code, _, err = run(capsys, "--stack", stack)
    # Then: exit 1, the AWS error code, no traceback, no token, no webhook
    assert code == 1
    assert "AccessDeniedException" in err and "Traceback" not in err
    assert telegram.webhook == {}


def test_the_stored_token_is_used_when_none_is_given(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a registered bot, and later a shell without TELEGRAM_BOT_TOKEN and no terminal
    assert run(capsys, "--stack", stack)[0] == 0
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    # When the webhook is registered again, the token stored in SSM is reused
    telegram.webhook = {}
    assert run(capsys, "--stack", stack)[0] == 0
    assert telegram.webhook["url"] == WEBHOOK_URL


def test_without_any_token_the_script_says_where_to_put_one(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    code, _, err = run(capsys, "--stack", stack)
    assert code == 2
    assert "TELEGRAM_BOT_TOKEN" in err and err.count("\n") == 1
    assert telegram.calls == []


def test_in_a_terminal_the_token_is_asked_for_without_echo(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a terminal and no token in the environment
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    prompts: list[str] = []

    def typed(prompt: str) -> str:
        prompts.append(prompt)
        return f"  {TOKEN}\n"

    monkeypatch.setattr("getpass.getpass", typed)
    monkeypatch.setattr("sys.stdin", FakeTerminal())
    # When the script runs, it asks once (getpass: nothing is echoed) and uses what was typed
    assert run(capsys, "--stack", stack)[0] == 0
    assert len(prompts) == 1 and "token" in prompts[0]
    assert stored(TOKEN_PARAMETER) == TOKEN


class FakeTerminal:
    """stdin as an interactive shell has it."""

    def isatty(self) -> bool:
        return True


def test_a_stack_without_the_webhook_output_or_a_missing_stack_is_a_configuration_error(
    telegram: TelegramSimulator, aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack("old-stack", webhook_url=None)
    code, _, err = run(capsys, "--stack", "old-stack")
    assert code == 2 and "TelegramWebhookUrl" in err

    code, _, err = run(capsys, "--stack", "no-such-stack")
    assert code == 2 and "does not exist" in err
    assert "Traceback" not in err
    assert telegram.webhook == {}


# ------------------------------------------------------------------------------------------ status, delete


def test_status_shows_the_registered_webhook_and_stores_nothing(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given nothing registered yet: status says so, and does not store the token it was given
    code, out, err = run(capsys, "--stack", stack, "--status")
    assert code == 0
    assert "(none)" in out and "no webhook is registered" in err
    assert parameter(TOKEN_PARAMETER) is None

    # Given the registered webhook: status shows the stack's URL and what Telegram sends, no warning
    assert run(capsys, "--stack", stack)[0] == 0
    code, out, err = run(capsys, "--stack", stack, "--status")
    assert code == 0
    assert WEBHOOK_URL in out and "pending_update_count: 0" in out and "message" in out
    assert "warning" not in err


def test_status_warns_when_telegram_posts_somewhere_else(
    bot_api: tuple[TelegramSimulator, LoopbackServer], stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a webhook someone pointed at another deployment
    _, server = bot_api
    TelegramClient(TOKEN, api_base=server.url).call("setWebhook", url="https://elsewhere.example/telegram")
    code, out, err = run(capsys, "--stack", stack, "--status")
    assert code == 0
    assert "https://elsewhere.example/telegram" in out
    assert "warning" in err and WEBHOOK_URL in err


def test_status_shows_telegrams_last_delivery_error_with_its_time(
    telegram: TelegramSimulator,
    stack: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Telegram reporting that its last delivery failed (the simulator does not fail deliveries itself)
    info = {
        "url": WEBHOOK_URL,
        "pending_update_count": 3,
        "last_error_date": 1_700_000_000,
        "last_error_message": "Wrong response from the webhook: 401 Unauthorized",
    }
    monkeypatch.setattr(telegram, "_get_webhook_info", lambda params: info)
    code, out, _ = run(capsys, "--stack", stack, "--status")
    assert code == 0
    assert "2023-11-14T22:13:20+00:00" in out
    assert "401 Unauthorized" in out and "pending_update_count: 3" in out


def test_delete_removes_the_webhook_and_leaves_ssm_alone(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--stack", stack)[0] == 0
    secret = stored(SECRET_PARAMETER)
    code, out, _ = run(capsys, "--stack", stack, "--delete")
    assert code == 0 and "deleted" in out.lower()
    assert telegram.webhook == {}
    assert stored(TOKEN_PARAMETER) == TOKEN and stored(SECRET_PARAMETER) == secret


def test_rotate_secret_makes_no_sense_with_status_or_delete(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        script.main(["--stack", stack, "--delete", "--rotate-secret"])
    assert exited.value.code == 2
    assert telegram.calls == []


# ---------------------------------------------------------------------------------------------- local stack


def patch_clients(
    monkeypatch: pytest.MonkeyPatch,
    endpoints: list[tuple[str, str | None]] | None = None,
    on_ssm: Callable[[Any], None] | None = None,
) -> None:
    """Make every boto3 client the script creates talk to the in-process moto.

    moto's `mock_aws` only intercepts requests to AWS-shaped URLs, so a client built with the local stack's
    `awsEndpoint` (http://127.0.0.1:…) would bypass it. The wrapper records the endpoint_url the script asked
    for (so the test can check it) and builds the client without it; `on_ssm` may stub the SSM client.
    """
    original = boto3.session.Session.client

    def client(self: Any, service: str, *args: Any, endpoint_url: str | None = None, **kwargs: Any) -> Any:
        if endpoints is not None:
            endpoints.append((service, endpoint_url))
        created = original(self, service, *args, **kwargs)
        if service == "ssm" and on_ssm is not None:
            on_ssm(created)
        return created

    monkeypatch.setattr(boto3.session.Session, "client", client)


def test_the_local_stack_is_found_through_its_endpoints_file(
    bot_api: tuple[TelegramSimulator, LoopbackServer],
    aws: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    simulator, server = bot_api
    # Given the endpoints.json `python -m local up` writes, the simulator named in it (not in the environment)
    # and a shell without AWS credentials (the script uses fake ones for the local moto server)
    path = tmp_path / "endpoints.json"
    path.write_text(
        json.dumps(
            {
                "stackName": "local-dev",
                "awsEndpoint": "http://127.0.0.1:59999",
                "region": "us-east-1",
                "telegramWebhookUrl": "http://127.0.0.1:3000/telegram",
                "telegramApiBase": server.url,
            }
        )
    )
    monkeypatch.delenv("TELEGRAM_API_BASE")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    asked: list[tuple[str, str | None]] = []
    patch_clients(monkeypatch, endpoints=asked)

    # When the script runs in local mode
    code, _, _ = run(capsys, "--endpoints", str(path))

    # Then SSM was the local stack's, the secrets sit under its stack name, and the simulator got the webhook
    assert code == 0
    assert asked == [("ssm", "http://127.0.0.1:59999")]
    assert stored("/local-dev/secrets/telegram-bot-token") == TOKEN
    assert simulator.webhook["url"] == "http://127.0.0.1:3000/telegram"
    assert simulator.webhook["secret_token"] == stored("/local-dev/secrets/telegram-webhook-secret")


def test_a_missing_or_incomplete_endpoints_file_is_a_configuration_error(
    telegram: TelegramSimulator, aws: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--endpoints", str(tmp_path / "absent.json"))
    assert code == 2 and "python -m local up" in err

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"stackName": "local-dev", "awsEndpoint": "http://127.0.0.1:59999"}))
    code, _, err = run(capsys, "--endpoints", str(old))
    assert code == 2 and "telegramWebhookUrl" in err
    assert telegram.calls == []


@pytest.mark.parametrize(
    "stack_name", ["a/b", "tg-test/secrets", "../tg-test", "tg test", "9stack", "x" * 129]
)
def test_a_stack_name_cloudformation_would_not_accept_is_a_usage_error_and_stores_nothing(
    telegram: TelegramSimulator, stack: str, capsys: pytest.CaptureFixture[str], stack_name: str
) -> None:
    # Given / When the operator names a stack that cannot exist (its name would make the SSM path)
    code, _, err = run(capsys, "--stack", stack_name)

    # Then the script refuses it before reaching AWS or Telegram, and nothing is stored anywhere
    assert code == 2 and "stack name" in err and "Traceback" not in err
    assert telegram.calls == []
    assert parameter(TOKEN_PARAMETER) is None


@pytest.mark.parametrize(
    "content",
    [
        b'{"stackName":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"stackName": "local-dev\\ud800"}',
        b"\xff\xfe{}",
        b'{"stackName": "local/dev", "awsEndpoint": "http://127.0.0.1:1", "telegramWebhookUrl": "http://x"}',
    ],
    ids=["deep", "lone-surrogate", "not-utf8", "bad-stack-name"],
)
def test_a_malformed_endpoints_file_is_a_configuration_error(
    telegram: TelegramSimulator,
    aws: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    # Given an endpoints file that is not what `python -m local up` writes
    path = tmp_path / "endpoints.json"
    path.write_bytes(content)

    # When the script reads it
    code, _, err = run(capsys, "--endpoints", str(path))

    # Then it says which file is wrong, without a traceback, and asks Telegram nothing
    assert code == 2 and str(path) in err and "Traceback" not in err
    assert telegram.calls == []
