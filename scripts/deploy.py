"""Deploy the stack to AWS in one command, from a clone to a working web chat; run again to upgrade.

    make deploy                                   # first run asks a few questions, later runs ask nothing
    make deploy OPENCLAW_VERSION=2026.10.2        # pin another OpenClaw (scripts/openclaw_pin.py), deploy it
    make deploy ARGS=--rollback                   # back to the previously deployed image
    python scripts/deploy.py --help               # every flag (to answer without prompts, e.g. in CI)

Steps: preflight (credentials, region, SAM CLI, python3.12, a container builder), with OPENCLAW_VERSION the
repository's pin moved to that release (the lockfile re-resolved; tracked files change, to test and commit),
the model's API key and
the Telegram bot token (environment or hidden prompt, stored as SSM SecureStrings), the image (an ECR
repository declared in `deploy/images.yaml`, built for linux/arm64 and tagged by a hash of its build
context, so an unchanged bridge is neither built nor pushed), `sam build` + `sam deploy` (skipped when the
template, the code and the parameters are those last deployed), the owner's login, the web chat, the
Telegram webhook, and one closing block. The answers of the first run are kept in `.deploy/<stack>.json`
(git-ignored); nothing else is written to tracked files. Exit codes: 0 done, 1 AWS or a command failed,
2 usage, configuration or a missing prerequisite (the message says what to do).
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# Runnable as `python scripts/deploy.py` from anywhere: the shared package lives in the Lambda layer's
# directory, the bridge's provider table in bridge/, the other scripts beside this file.
_REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [
    p for p in map(str, (_REPO, _REPO / "layers" / "shared", _REPO / "bridge")) if p not in sys.path
]

import boto3  # noqa: E402

from local.runtime import openclaw_version as pinned_openclaw_version  # noqa: E402
from local.template import load_template  # noqa: E402
from scripts import costs, openclaw_pin, users  # noqa: E402
from scripts import publish_frontend as web  # noqa: E402
from scripts import telegram_webhook as telegram  # noqa: E402
from scripts.aws_errors import Failure, UsageError, aws_errors, exit_code  # noqa: E402
from scripts.bridge_image import Registry, ensure_repository, files_digest  # noqa: E402
from scripts.build_frontend import FRONTEND, BuildError, build  # noqa: E402
from scripts.commands import Command, CommandRunner, Runner  # noqa: E402
from scripts.deploy_answers import DEFAULT_STACK, Answers, Console, Deployment, gather_answers  # noqa: E402
from scripts.deploy_secrets import Secrets, gather_secrets  # noqa: E402
from scripts.deployed_image import Image, choose_image  # noqa: E402
from scripts.stack_events import describe_stack, stack_failure  # noqa: E402
from serverless_openclaw.observability import logger  # noqa: E402
from serverless_openclaw.telegram import TelegramClient, TelegramError  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient

CHECKOUT = _REPO
"""The checkout deployed: its template, the image's build context and the pins an upgrade rewrites."""
SAM = _REPO / ".venv-sam" / "bin" / "sam"
TEMPLATE = "template.yaml"
BUILT_TEMPLATE = ".aws-sam/build/template.yaml"
_parsed_template = functools.cache(load_template)


def template() -> dict[str, Any]:
    """The checkout's template.yaml, parsed once per process (PyYAML takes about a second over it)."""
    return _parsed_template(CHECKOUT / TEMPLATE)


HISTORY = 20
"""Deployed images remembered for --rollback (the repository keeps the last 10 anyway)."""
STACK_CODE = ("functions", "layers")
"""What `sam build` packages besides the template (every CodeUri and ContentUri lies under these)."""


# --------------------------------------------------------------------------------------------------------
# Preflight
# --------------------------------------------------------------------------------------------------------


@dataclass
class Aws:
    """The AWS clients of one deploy, all from one session (credentials, region, endpoint overrides)."""

    session: boto3.session.Session
    region: str
    account: str
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """This session's client of a service, made once (boto3 honours AWS_ENDPOINT_URL_<SERVICE>)."""
        if service not in self.clients:
            with aws_errors():
                self.clients[service] = self.session.client(service)  # type: ignore[call-overload]
        return self.clients[service]


def connect(region: str, console: Console) -> Aws:
    """The session and the account its credentials belong to (STS), or what to do when there are none."""
    session = boto3.session.Session(region_name=region)
    try:
        with aws_errors():
            identity = session.client("sts").get_caller_identity()
    except Failure as exc:
        if any(sign in str(exc) for sign in CREDENTIAL_PROBLEMS):
            raise UsageError(f"{NO_CREDENTIALS} ({exc})") from None
        raise
    print(f"  account   {identity['Account']} as {identity['Arn']}", file=console.out)
    print(f"  region    {region}", file=console.out)
    return Aws(session=session, region=region, account=str(identity["Account"]))


CREDENTIAL_PROBLEMS = (
    "credentials",
    "could not be found",
    "ExpiredToken",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
)
"""What STS's or botocore's message says when the credentials are missing, unknown or expired."""
NO_CREDENTIALS = (
    "no usable AWS credentials: run `aws configure` (or `aws sso login`), or set AWS_PROFILE, "
    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, then run make deploy again"
)


def python312(runner: Runner, env: Mapping[str, str]) -> str:
    """The folder of a python3.12 for `sam build` (it pip-installs for the Lambda runtime without Docker)."""
    candidates = [env.get("PYTHON312", ""), runner.which("python3.12") or ""]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True
    )
    for candidate in candidates:
        if candidate and runner.which(candidate):
            return str(Path(candidate).parent)
    raise UsageError(
        "sam build needs python3.12 on PATH (Lambda's runtime): install it (pyenv install 3.12, "
        "or your system's python3.12 package) and run make deploy again"
    )


def preflight(runner: Runner, env: Mapping[str, str], console: Console) -> str:
    """The SAM CLI and python3.12 are there; the folder of python3.12."""
    if not runner.which(str(SAM)):
        raise UsageError(
            f"the SAM CLI is not installed in {SAM.parent.parent.name}: run make deploy (it installs it)"
        )
    folder = python312(runner, env)
    print(f"  SAM CLI   {SAM.relative_to(_REPO)}; python3.12 in {folder}", file=console.out)
    return folder


# --------------------------------------------------------------------------------------------------------
# The checkout's OpenClaw pin
# --------------------------------------------------------------------------------------------------------


def pin_openclaw(version: str, runner: Runner, env: Mapping[str, str], console: Console) -> list[str]:
    """Move the checkout's pins to OpenClaw `version` (OPENCLAW_VERSION); the tracked files rewritten."""
    pinned = openclaw_pin.pin(version, runner, console.out, root=CHECKOUT, env=env)
    if pinned.changed:
        _parsed_template.cache_clear()  # its OpenClawVersion default moved
        print(
            f"  these tracked files now pin OpenClaw {version}: {', '.join(pinned.changed)}\n"
            "  run make test, then commit them (this deploy ships them as they are)",
            file=console.out,
        )
    return pinned.changed


# --------------------------------------------------------------------------------------------------------
# The stack
# --------------------------------------------------------------------------------------------------------


def stack_parameters(answers: Answers, image: Image) -> dict[str, str]:
    """Every parameter this script sets (the template's defaults stand for the others)."""
    parameters = {
        "BridgeImageUri": image.uri,
        "OpenClawVersion": image.openclaw,
        "ModelProvider": answers.provider,
        "ModelId": answers.model_id,
        "ModelBaseUrl": answers.model_base_url,
        "AlarmEmail": answers.alarm_email,
        **answers.parameters,
    }
    return parameters


def fingerprint(parameters: Mapping[str, str]) -> str:
    """A hash of what `sam deploy` would send: the template, the functions' and layers' code, parameters."""
    return files_digest(CHECKOUT, [TEMPLATE, *STACK_CODE], parameters)


def unchanged(
    stack: Mapping[str, Any] | None, answers: Answers, parameters: Mapping[str, str], digest: str
) -> bool:
    """Whether the stack is complete and runs exactly these parameters, template and code."""
    if stack is None or stack.get("StackStatus") not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        return False
    live = {str(p["ParameterKey"]): str(p.get("ParameterValue", "")) for p in stack.get("Parameters") or []}
    if any(live.get(key, "") != value for key, value in parameters.items()):
        return False
    return bool(answers.deployed) and answers.deployed[-1].fingerprint == digest


def sam_commands(answers: Answers, parameters: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """`sam build` and `sam deploy` as argument lists: no --guided, nothing written to samconfig.toml."""
    sam_build = [str(SAM), "build", "--template-file", TEMPLATE, "--cached", "--parallel"]
    sam_deploy = [
        str(SAM),
        "deploy",
        "--template-file",
        BUILT_TEMPLATE,
        "--stack-name",
        answers.stack,
        "--region",
        answers.region,
        "--capabilities",
        "CAPABILITY_IAM",
        "--resolve-s3",
        "--s3-prefix",
        answers.stack,
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
        "--no-progressbar",
        "--parameter-overrides",
        *[f'{key}="{value}"' for key, value in parameters.items()],
    ]
    return sam_build, sam_deploy


def deploy_stack(
    runner: Runner,
    cloudformation: CloudFormationClient,
    answers: Answers,
    parameters: Mapping[str, str],
    python_dir: str,
) -> None:
    """`sam build` then `sam deploy`; a failure names the resources CloudFormation refused and why."""
    sam_build, sam_deploy = sam_commands(answers, parameters)
    env = {"PATH": f"{python_dir}{os.pathsep}{os.environ.get('PATH', '')}", "SAM_CLI_TELEMETRY": "0"}
    if runner.run(Command(sam_build, env=env)).code != 0:
        raise Failure("sam build failed: see its output above")
    if runner.run(Command(sam_deploy, env=env)).code == 0:
        return
    if describe_stack(cloudformation, answers.stack) is None:
        raise Failure("sam deploy failed before the stack was created: see its output above")
    raise stack_failure(cloudformation, answers.stack)


# --------------------------------------------------------------------------------------------------------
# The owner, the web chat, Telegram
# --------------------------------------------------------------------------------------------------------


def publish_web(aws: Aws, outputs: web.StackOutputs, console: Console) -> bool:
    """Build the web chat and publish it unless the bucket serves that build already; whether it did."""
    s3 = aws.client("s3")
    config = web.runtime_config(outputs, aws.region)
    with tempfile.TemporaryDirectory(prefix="openclaw-web-") as workdir:
        try:
            site = build(Path(workdir) / "site", source=FRONTEND)
        except BuildError as exc:
            raise UsageError(str(exc)) from None
        page = next(file for file in site.files if file.path == web.PAGE).source.read_bytes()
        live_page, live_config = (
            _object(s3, outputs.bucket, web.PAGE),
            _object(s3, outputs.bucket, web.CONFIG),
        )
        if live_page == page and _holds(live_config, config):
            print("  the web chat is published already", file=console.out)
            return False
        web.Publisher(s3=s3, bucket=outputs.bucket, out=console.out).publish(site, config)
    web.invalidate(aws.client("cloudfront"), outputs.distribution_id)
    return True


def _holds(stored: bytes | None, expected: Mapping[str, str]) -> bool:
    """Whether a stored config.json says exactly this (one that cannot be read does not)."""
    try:
        return stored is not None and json.loads(stored) == expected
    except ValueError:
        return False


def _object(s3: Any, bucket: str, key: str) -> bytes | None:
    """An object's bytes, None when there is none."""
    with aws_errors():
        try:
            return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None


def connect_telegram(
    aws: Aws, answers: Answers, token: str | None, env: Mapping[str, str], console: Console
) -> str:
    """Register the webhook with a new token, or check the stored one points here; a line for the end."""
    cloudformation = aws.client("cloudformation")
    target = telegram.Target(
        stack=answers.stack,
        api_base=telegram.resolve_api_base(answers.parameters.get("TelegramApiBase"), env),
        ssm=aws.client("ssm"),
        webhook_url=lambda: telegram.stack_webhook_url(cloudformation, answers.stack),
    )
    if token is None:
        token = telegram.read_parameter(target.ssm, target.token_parameter)
        if token is None:
            return "off (make deploy ARGS=--telegram to add a bot)"
        registered = _webhook_url(target, token)
        if registered is None:
            return "the stored bot's webhook could not be checked (Telegram did not answer): run again later"
        if registered == target.webhook_url():
            return "webhook registered"
    try:
        telegram.register(target, token, rotate_secret=False, drop_pending=False, out=console.out)
    except TelegramError as exc:
        raise Failure(f"Telegram {exc.method} failed: {exc.description} (run make deploy again)") from None
    return "webhook registered (send /link CODE from the web chat's settings to the bot)"


def _webhook_url(target: telegram.Target, token: str) -> str | None:
    """Where Telegram posts this bot's updates now ('' when nowhere); None when Telegram cannot be asked."""
    try:
        # One quick look: an unreachable Telegram must not hold up a deploy that is otherwise done.
        info = TelegramClient(token, api_base=target.api_base, attempts=1).call("getWebhookInfo")
    except TelegramError:
        return None
    return str(info.get("url") or "")


# --------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What this run did, for the closing block."""

    changed: list[str] = field(default_factory=list)
    password: str | None = None
    telegram: str = ""
    web_url: str = ""
    image: Image | None = None
    parameters: dict[str, str] = field(default_factory=dict)


def step(console: Console, title: str) -> None:
    """Announce a step."""
    print(f"==> {title}", file=console.out, flush=True)


def run(args: argparse.Namespace, env: Mapping[str, str], console: Console, runner: Runner) -> Outcome:
    """Every step of the deploy, in order; the outcome for the closing block."""
    region_default = boto3.session.Session().region_name
    if args.rollback and args.openclaw_version:
        raise UsageError("--rollback redeploys an earlier image as it was built: drop OPENCLAW_VERSION")
    answers = gather_answers(args, region_default, console, template())
    answers.save()
    step(console, f"preflight: stack {answers.stack}")
    aws = connect(answers.region, console)
    python_dir = preflight(runner, env, console)
    outcome = Outcome()
    if args.openclaw_version:
        step(console, f"OpenClaw {args.openclaw_version}")
        if repinned := pin_openclaw(args.openclaw_version, runner, env, console):
            outcome.changed.append(
                f"pinned OpenClaw {args.openclaw_version} in {', '.join(repinned)} (make test, then commit)"
            )
    step(console, "secrets")
    secrets = gather_secrets(aws.client("ssm"), answers, env, console, args.replace_secrets)
    answers.save()
    outcome.changed += [f"stored {name}" for name in secrets.stored]
    cloudformation = aws.client("cloudformation")
    step(console, "bridge image")
    repository = ensure_repository(cloudformation, answers.stack, console.out)
    stack = describe_stack(cloudformation, answers.stack)
    image = choose_image(
        Registry(aws.client("ecr")),
        runner,
        answers,
        repository,
        stack,
        console,
        checkout=CHECKOUT,
        pinned=pinned_openclaw_version(template()),
        rollback=args.rollback,
    )
    if image.built:
        outcome.changed.append("built and pushed the bridge image")
    outcome.image = image
    outcome.parameters = stack_parameters(answers, image)
    step(console, f"stack {answers.stack}")
    deploy_if_changed(runner, cloudformation, answers, outcome, stack, python_dir, console)
    finish(aws, answers, secrets, outcome, env, console)
    print(closing(answers, outcome, aws.region), file=console.out)
    return outcome


def deploy_if_changed(
    runner: Runner,
    cloudformation: CloudFormationClient,
    answers: Answers,
    outcome: Outcome,
    stack: Mapping[str, Any] | None,
    python_dir: str,
    console: Console,
) -> None:
    """sam build + sam deploy unless the stack already runs these parameters, template and code."""
    digest = fingerprint(outcome.parameters)
    if stack is not None and stack.get("StackStatus") == "ROLLBACK_COMPLETE":
        # A first creation that failed: CloudFormation can only delete such a stack, not update it.
        failure = stack_failure(cloudformation, answers.stack)
        raise UsageError(
            f"{failure}\nthe first deploy of {answers.stack} failed and CloudFormation cannot update it: "
            f"fix the cause, delete it (make destroy, or aws cloudformation delete-stack --stack-name "
            f"{answers.stack}) "
            "and run make deploy again"
        )
    if unchanged(stack, answers, outcome.parameters, digest):
        print(
            "  template, code and parameters are those deployed: no sam build, no sam deploy",
            file=console.out,
        )
        return
    deploy_stack(runner, cloudformation, answers, outcome.parameters, python_dir)
    image = outcome.image
    if image is not None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        answers.deployed = [*answers.deployed, Deployment(image.uri, image.openclaw, digest, now)][-HISTORY:]
        answers.save()
    outcome.changed.append("deployed the stack")


def finish(
    aws: Aws, answers: Answers, secrets: Secrets, outcome: Outcome, env: Mapping[str, str], console: Console
) -> None:
    """The owner's login, the web chat and the Telegram webhook."""
    outputs = web.read_outputs(aws.client("cloudformation"), answers.stack)
    outcome.web_url = outputs.web_url
    step(console, "owner")
    outcome.password = users.ensure_owner(
        aws.client("cognito-idp"), outputs.user_pool_id, answers.owner_email
    )
    if outcome.password is not None:
        outcome.changed.append(f"created the user {answers.owner_email}")
    print(f"  {answers.owner_email}: {'created' if outcome.password else 'exists already'}", file=console.out)
    step(console, "web chat")
    if publish_web(aws, outputs, console):
        outcome.changed.append("published the web chat")
    step(console, "Telegram")
    outcome.telegram = connect_telegram(aws, answers, secrets.telegram_token, env, console)
    if secrets.telegram_token is not None:
        outcome.changed.append("registered the Telegram webhook")


def cost(parameters: Mapping[str, str], region: str) -> str:
    """The rough monthly cost of the stack with these parameters (the template's defaults for the rest)."""
    try:
        return costs.describe(parameters, region)
    except ValueError as exc:  # a size costs.py has no price for: the deploy itself went through
        return f"no estimate for these sizes ({exc}); see python scripts/costs.py --help"


def closing(answers: Answers, outcome: Outcome, region: str) -> str:
    """The block printed at the end: where, who, which model, what runs, what it costs."""
    if outcome.password:
        login = f"{answers.owner_email}   temporary password: {outcome.password}  (shown once)"
    else:
        login = (
            f"{answers.owner_email}   (your password; if forgotten: python scripts/users.py --stack "
            f"{answers.stack} --region {region} reset-password {answers.owner_email})"
        )
    model = answers.provider + (f" / {answers.model_id}" if answers.model_id else " (its default model)")
    image = outcome.image.uri if outcome.image else "?"
    version = outcome.image.openclaw if outcome.image else "?"
    lines = [
        "",
        f"  web chat   {outcome.web_url}",
        f"  login      {login}",
        f"  model      {model}",
        f"  runs       stack {answers.stack} in {region}: OpenClaw {version}, image {image}",
        "             the agent starts on your first message (Fargate Spot, ARM64) and stops when idle",
        f"  Telegram   {outcome.telegram}",
        "  cost       " + "\n             ".join(cost(outcome.parameters, region).splitlines()),
        "",
        ("  changed    " + "; ".join(outcome.changed))
        if outcome.changed
        else "  nothing changed: nothing was built, pushed, deployed or uploaded",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (no option takes a secret: those come from the environment or a hidden prompt)."""
    parser = QuietParser(
        prog="deploy.py",
        description="Deploy serverless-openclaw to AWS, or upgrade it: image, stack, secrets, owner, web.",
        epilog=(
            "Secrets come from the environment or a hidden prompt, never from arguments: ANTHROPIC_API_KEY, "
            "OPENAI_API_KEY or OPENAI_COMPATIBLE_API_KEY (the provider's), TELEGRAM_BOT_TOKEN. "
            "Without a terminal "
            "(CI=true or no tty) nothing is asked: a first run needs --provider and --owner-email (--stack "
            f"defaults to {DEFAULT_STACK}, --region to boto3's). Answers are kept in .deploy/<stack>.json."
        ),
    )
    parser.add_argument("--stack", metavar="NAME", help=f"stack name (first run; default {DEFAULT_STACK})")
    parser.add_argument("--region", help="AWS region (first run; default: boto3's, e.g. AWS_REGION)")
    parser.add_argument("--provider", help="model provider: one of the template's ModelProvider values")
    parser.add_argument("--model-id", help="model id for the provider (default: the bridge's choice)")
    parser.add_argument("--model-base-url", help="base URL of an openai-compatible provider (https://…)")
    parser.add_argument("--owner-email", metavar="EMAIL", help="your e-mail: the first user of the web chat")
    parser.add_argument(
        "--alarm-email", metavar="EMAIL", help="e-mail subscribed to the alarms ('' for none)"
    )
    parser.add_argument(
        "--openclaw-version",
        metavar="VERSION",
        help="pin this OpenClaw release first (rewrites the lockfile and pins: test and commit them)",
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other template parameter (kept)",
    )
    parser.add_argument(
        "--telegram", action="store_true", default=None, help="ask for a Telegram bot token again"
    )
    parser.add_argument("--no-telegram", dest="telegram", action="store_false", help="no Telegram bot")
    parser.add_argument(
        "--replace-secrets", action="store_true", help="store the API key and bot token again"
    )
    parser.add_argument("--rollback", action="store_true", help="redeploy the image deployed before this one")
    return parser.parse_args(argv)


class QuietParser(argparse.ArgumentParser):
    """An argument parser that never repeats an argument it refuses: it may be a key pasted by mistake."""

    def error(self, message: str) -> NoReturn:
        """Exit 2 with the usage and the reason, without the refused argument's text."""
        if message.startswith("unrecognized arguments"):
            message = (
                "unrecognized arguments (not shown in case one is a secret; API keys and the bot token "
                "are read from the environment or a hidden prompt)"
            )
        super().error(message)


def main(argv: list[str] | None = None) -> int:
    """Run the deploy; the process exit code."""
    args = parse_args(argv)
    # The shared package logs JSON lines for CloudWatch; on a terminal this script's own messages say it all.
    logger.setLevel("ERROR")
    env = os.environ
    interactive = (
        sys.stdin is not None and sys.stdin.isatty() and env.get("CI", "").lower() not in ("1", "true")
    )
    console = Console(out=sys.stdout, interactive=interactive)

    return exit_code(lambda: run(args, env, console, CommandRunner(_REPO, sys.stdout)))


if __name__ == "__main__":
    raise SystemExit(main())
