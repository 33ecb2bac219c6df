"""scripts/deploy.py rehearsed: moto for every AWS call, a recording runner for `sam` and the image builder.

Each test deploys as a person would (`make deploy`, again, with another OpenClaw, --rollback) and checks what
they would see — the closing block, the error line — and what reached AWS: the stack's parameters, the
image in ECR, the secrets in SSM, the owner in Cognito, the web chat in S3. The exact commands the real
`sam` and builder would have run are checked too, and no secret may appear in any output, argument list,
stdin other than the login's, answers file or error.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.runtime import openclaw_version, runtime
from local.telegram import TelegramSimulator
from local.template import load_template
from scripts import costs, deploy, deploy_answers
from scripts.aws_errors import Failure, exit_code
from scripts.bridge_image import PLATFORM, REPOSITORY, context_tag, dockerfile_sources
from scripts.stack_events import wait_until_settled
from serverless_openclaw.settings import UNAVAILABLE_PROVIDERS
from tests.local.servers import serve
from tests.unit.deploy_rehearsal import (
    ACCOUNT,
    PINNED_FILES,
    PYTHON312,
    REGION,
    Refusal,
    Rehearsal,
    copy_checkout,
    ecr_password,
)
from tests.unit.fake_npm import NPM_EXIT_ENV, NPM_LOG_ENV
from tests.unit.test_publish_frontend import write_frontend

STACK = "claw-test"
OWNER = "owner@example.com"
API_KEY = "sk-ant-api03-SECRET-qwertyuiopasdfghjklzxcvbnm"
BOT_TOKEN = "7000000001:AAH-deploy_test_token_mnbvcxzlkjhgfdsa"
REPOSITORY_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{STACK}-bridge"
FIRST_RUN = ("--stack", STACK, "--region", REGION, "--provider", "anthropic", "--owner-email", OWNER)
NEWER = "2026.10.1"


@pytest.fixture
def rehearsal(aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rehearsal:
    """moto, an empty answers folder, a small web chat, the provider's key in the environment."""
    monkeypatch.setattr(deploy_answers, "ANSWERS_DIR", tmp_path / ".deploy")
    monkeypatch.setattr(deploy, "FRONTEND", write_frontend(tmp_path / "frontend"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("PYTHON312", PYTHON312)  # as the Makefile passes it
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return Rehearsal()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The checkout's copy to deploy from (an upgrade rewrites its pins); the local Node npm runs on."""
    copy = copy_checkout(tmp_path / "checkout")
    monkeypatch.setattr(deploy, "CHECKOUT", copy)
    monkeypatch.setenv("OPENCLAW_RUNTIME_DIR", str(tmp_path / "runtime"))
    node = runtime(tmp_path / "runtime").node
    node.parent.mkdir(parents=True)
    node.touch()
    monkeypatch.setenv(NPM_LOG_ENV, str(tmp_path / "npm.log"))
    return copy


def pins(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in PINNED_FILES}


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramSimulator]:
    """The local Bot API for BOT_TOKEN on a loopback port (TELEGRAM_API_BASE points there)."""
    simulator = TelegramSimulator(BOT_TOKEN)
    with serve(simulator.app) as server:
        monkeypatch.setenv("TELEGRAM_API_BASE", server.url)
        yield simulator


def make_deploy(
    rehearsal: Rehearsal,
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    console: deploy_answers.Console | None = None,
) -> tuple[int, str, str]:
    """`make deploy ARGS=…` without a terminal: exit code, stdout, stderr (all checked for secrets)."""
    rehearsal.calls.clear()
    rehearsal.stdins.clear()
    rehearsal.envs.clear()
    args = deploy.parse_args(list(argv))
    shown = console or deploy_answers.Console(out=io.StringIO(), interactive=False)
    if console is None:
        shown = deploy_answers.Console(out=_stdout(), interactive=False)
    code = exit_code(lambda: deploy.run(args, dict(os.environ), shown, rehearsal))
    out, err = capsys.readouterr()
    assert_no_secret(out + err, *argument_lists(rehearsal), *answers_files())
    return code, out, err


def _stdout() -> Any:
    import sys

    return sys.stdout


def argument_lists(rehearsal: Rehearsal) -> list[str]:
    return [" ".join(argv) for argv in rehearsal.calls]


def answers_files() -> list[str]:
    return [path.read_text() for path in deploy_answers.ANSWERS_DIR.glob("*.json")]


def assert_no_secret(*texts: str) -> None:
    """No part (8 characters or more) of the API key or the bot token appears, nor the registry password.

    (moto's registry password starts with the account id, which is shown on purpose: it is matched whole.)
    """
    password = ecr_password()
    for text in texts:
        assert password not in text, "the registry password was shown"
        for secret in (API_KEY, BOT_TOKEN):
            leaked = [secret[i : i + 8] for i in range(len(secret) - 7) if secret[i : i + 8] in text]
            assert not leaked, f"part of a secret was shown: {leaked[:1]}"


def stack_parameters(stack: str = STACK) -> dict[str, str]:
    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}


def image_digests() -> dict[str, str]:
    """tag → digest of every image in the stack's repository."""
    images = boto3.client("ecr").describe_images(repositoryName=f"{STACK}-bridge")["imageDetails"]
    return {image["imageTags"][0]: image["imageDigest"] for image in images}


def secure_parameter(name: str) -> Any:
    found: Any = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]
    return found


def expected_tag(version: str) -> str:
    """The tag of the image of the checkout deployed (the repository's, or the fixture's copy)."""
    root = deploy.CHECKOUT
    return context_tag(root, root / "bridge" / "Dockerfile", {"OPENCLAW_VERSION": version}, PLATFORM)


def invalidations(distribution_id: str) -> int:
    listed = boto3.client("cloudfront").list_invalidations(DistributionId=distribution_id)["InvalidationList"]
    return len(listed.get("Items") or [])


def expected_sam_deploy(parameters: dict[str, str]) -> list[str]:
    return [
        str(deploy.SAM),
        "deploy",
        "--template-file",
        ".aws-sam/build/template.yaml",
        "--stack-name",
        STACK,
        "--region",
        REGION,
        "--capabilities",
        "CAPABILITY_IAM",
        "--resolve-s3",
        "--s3-prefix",
        STACK,
        "--no-confirm-changeset",
        "--no-fail-on-empty-changeset",
        "--no-progressbar",
        "--parameter-overrides",
        *[f'{key}="{value}"' for key, value in parameters.items()],
    ]


# ------------------------------------------------------------------------------------------- first run


def test_the_first_run_builds_pushes_deploys_and_ends_with_the_login(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a clone that never deployed, an account with nothing in it, Docker with buildx
    version = openclaw_version()
    tag = expected_tag(version)

    # When make deploy runs with the first run's answers as flags
    code, out, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then the image was built for arm64 with buildx and pushed, after a login with the password on stdin
    assert code == 0, err
    assert rehearsal.programs() == [
        "docker buildx version",
        "docker login",
        "docker buildx build",
        "sam build",
        "sam deploy",
    ]
    assert rehearsal.call("docker login") == [
        "docker", "login", "--username", "AWS", "--password-stdin",
        f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
    ]  # fmt: skip
    assert rehearsal.stdins == [ecr_password() + "\n"]
    # (without the SOCI CLI the image is pushed as it is, and the output says what to install for an index)
    assert "no SOCI index: soci and oras not installed" in out
    assert "https://github.com/awslabs/soci-snapshotter/releases" in out
    assert rehearsal.call("docker buildx build") == [
        "docker", "buildx", "build", "--platform", "linux/arm64",
        "--file", str(REPOSITORY / "bridge" / "Dockerfile"),
        "--tag", f"{REPOSITORY_URI}:{tag}", "--build-arg", f"OPENCLAW_VERSION={version}",
        "--provenance=false", "--push", str(REPOSITORY),
    ]  # fmt: skip
    # and sam ran without --guided, with python3.12 first on PATH, the image given by digest
    digest = image_digests()[tag]
    parameters = {
        "BridgeImageUri": f"{REPOSITORY_URI}@{digest}",
        "OpenClawVersion": version,
        "ModelProvider": "anthropic",
        "ModelId": "",
        "ModelBaseUrl": "",
        "AlarmEmail": "",
    }
    assert rehearsal.call("sam build") == [
        str(deploy.SAM),
        "build",
        "--template-file",
        "template.yaml",
        "--cached",
        "--parallel",
    ]
    assert rehearsal.envs[rehearsal.programs().index("sam build")]["PATH"].startswith(
        str(Path(PYTHON312).parent)
    )
    assert rehearsal.call("sam deploy") == expected_sam_deploy(parameters)
    assert stack_parameters() == parameters
    # and the key is a SecureString, the owner exists, the web chat is published and CloudFront told
    assert secure_parameter(f"/{STACK}/secrets/anthropic-api-key")["Type"] == "SecureString"
    assert secure_parameter(f"/{STACK}/secrets/anthropic-api-key")["Value"] == API_KEY
    bucket = rehearsal.resources["WebBucketName"]
    config = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key="config.json")["Body"].read())
    assert config["userPoolId"] == rehearsal.resources["UserPoolId"]
    assert invalidations(rehearsal.resources["WebDistributionId"]) == 1
    # and the closing block says where, who (with the password shown once), which model, what it costs
    assert f"web chat   {rehearsal.resources['WebUrl']}" in out
    password = out.split(f"login      {OWNER}   temporary password: ")[1].split()[0]
    assert len(password) >= 8
    pool = rehearsal.resources["UserPoolId"]
    owner = boto3.client("cognito-idp").admin_get_user(UserPoolId=pool, Username=OWNER)
    assert owner["UserStatus"] == "FORCE_CHANGE_PASSWORD"
    assert "model      anthropic (its default model)" in out
    assert f"OpenClaw {version}, image {REPOSITORY_URI}@{digest}" in out
    estimate = costs.describe(parameters, REGION).splitlines()
    assert "cost       " + "\n             ".join(estimate) in out
    assert "Telegram   off" in out
    # and the answers are kept for the next run, outside git
    kept = json.loads((deploy_answers.ANSWERS_DIR / f"{STACK}.json").read_text())
    assert (kept["stack"], kept["region"], kept["owner_email"]) == (STACK, REGION, OWNER)
    assert (deploy_answers.ANSWERS_DIR / ".gitignore").read_text() == "*\n"


def test_the_first_run_in_a_terminal_asks_once_and_reads_the_key_hidden(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a person at a terminal without the key in the environment
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    asked: list[str] = []
    typed = iter([STACK, REGION, "anthropic", "", OWNER])
    hidden: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(typed)

    def ask_hidden(prompt: str) -> str:
        hidden.append(prompt)
        return API_KEY if "API key" in prompt else ""

    console = deploy_answers.Console(out=_stdout(), interactive=True, ask=ask, ask_hidden=ask_hidden)

    # When make deploy runs, and then again
    first = make_deploy(rehearsal, capsys, console=console)
    second = make_deploy(rehearsal, capsys, console=console)

    # Then the five questions were asked once, the key and the (skipped) bot token without echo
    assert first[0] == 0, first[2]
    assert second[0] == 0, second[2]
    assert [prompt.split(" [")[0].split(" (")[0].rstrip(": ") for prompt in asked] == [
        "Stack name",
        "AWS region",
        "Model provider",
        "E-mail for alarms",
        "Your e-mail",
    ]
    assert len(hidden) == 2 and "API key" in hidden[0] and "Telegram" in hidden[1]
    assert secure_parameter(f"/{STACK}/secrets/anthropic-api-key")["Value"] == API_KEY
    assert "nothing changed" in second[1]


def test_bedrock_is_refused_with_the_reason_and_only_the_templates_providers_are_offered(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the providers the stack's ModelProvider parameter allows
    allowed = load_template()["Parameters"]["ModelProvider"]["AllowedValues"]

    # When a first run asks for Bedrock on the command line
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN[:4], "--provider", "bedrock", *FIRST_RUN[6:])

    # Then it is refused with the reason the bridge gives, before anything ran or was created
    assert code == 2
    assert f"error: model provider bedrock: {UNAVAILABLE_PROVIDERS['bedrock']}" in err
    assert rehearsal.calls == []
    assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []

    # When a person at a terminal is asked for the provider, and types bedrock
    asked: list[str] = []
    typed = iter([STACK, REGION, "bedrock", "", OWNER])

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(typed)

    console = deploy_answers.Console(out=_stdout(), interactive=True, ask=ask, ask_hidden=lambda _: "")
    code, _, err = make_deploy(rehearsal, capsys, console=console)

    # Then the question offered exactly the template's providers, and the answer is refused the same way
    assert [prompt for prompt in asked if prompt.startswith("Model provider")] == [
        f"Model provider ({', '.join(allowed)}) [anthropic]: "
    ]
    assert "bedrock" not in allowed
    assert code == 2
    assert f"model provider bedrock: {UNAVAILABLE_PROVIDERS['bedrock']}" in err
    assert rehearsal.calls == []


def test_without_a_terminal_a_first_run_names_the_flags_it_needs(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given CI (no terminal) and only a stack name
    # When make deploy runs
    code, _, err = make_deploy(rehearsal, capsys, "--stack", STACK)

    # Then it stops before touching AWS and says which flags to pass
    assert code == 2
    assert "pass --provider, --owner-email" in err
    assert rehearsal.calls == []
    assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []


# ------------------------------------------------------------------------------------------- later runs


def test_a_second_run_with_nothing_changed_touches_nothing(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed stack
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    key_version = secure_parameter(f"/{STACK}/secrets/anthropic-api-key")["Version"]
    updated = (
        boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0].get("LastUpdatedTime")
    )

    # When make deploy runs again, with no flags at all
    code, out, err = make_deploy(rehearsal, capsys)

    # Then no program ran (no build, push or sam), nothing was stored, deployed, uploaded or invalidated
    assert code == 0, err
    assert rehearsal.calls == []
    assert "nothing changed: nothing was built, pushed, deployed or uploaded" in out
    assert len(image_digests()) == 1
    assert secure_parameter(f"/{STACK}/secrets/anthropic-api-key")["Version"] == key_version
    assert (
        boto3.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0].get("LastUpdatedTime")
        == updated
    )
    assert invalidations(rehearsal.resources["WebDistributionId"]) == 1
    # and the login line no longer shows a password
    assert f"login      {OWNER}   (your password;" in out


def test_a_changed_web_chat_alone_is_published_without_build_or_deploy(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed stack, then an edit to the web chat
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    (deploy.FRONTEND / "assets" / "app.js").write_text("export const version = 2;\n")

    # When make deploy runs
    code, out, err = make_deploy(rehearsal, capsys)

    # Then only the web chat was published (and CloudFront told); no program ran
    assert code == 0, err
    assert rehearsal.calls == []
    assert invalidations(rehearsal.resources["WebDistributionId"]) == 2
    assert "changed    published the web chat\n" in out


def test_an_upgrade_pins_the_new_openclaw_then_builds_and_deploys_it_by_digest(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], checkout: Path
) -> None:
    # Given a stack deployed from a checkout pinned to the current OpenClaw
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    first_image = stack_parameters()["BridgeImageUri"]
    before = pins(checkout)

    # When make deploy OPENCLAW_VERSION=2026.10.1 runs
    code, out, err = make_deploy(rehearsal, capsys, "--openclaw-version", NEWER)

    # Then npm re-resolved the lockfile for it (lockfile only, no scripts, on the local Node, not in the
    # checkout itself), before the image was built and the stack deployed
    assert code == 0, err
    assert rehearsal.programs() == [
        "npm install",
        "docker buildx version",
        "docker login",
        "docker buildx build",
        "sam build",
        "sam deploy",
    ]
    npm = rehearsal.call("npm install")
    assert {"--package-lock-only", "--ignore-scripts", "--save-exact", f"openclaw@{NEWER}"} <= set(npm)
    assert not Path(npm[npm.index("--prefix") + 1]).is_relative_to(checkout)
    node_dir = str(runtime().node.parent)
    assert rehearsal.envs[0]["PATH"].startswith(node_dir)
    # and every pin of the checkout now names the new version (what test_openclaw_lock.py checks)
    after = pins(checkout)
    assert [name for name in PINNED_FILES if after[name] != before[name]] == PINNED_FILES
    assert openclaw_version(load_template(checkout / "template.yaml")) == NEWER
    assert f"OPENCLAW_VERSION := {NEWER}\n" in (checkout / "Makefile").read_text()
    assert f"ARG OPENCLAW_VERSION={NEWER}\n" in (checkout / "bridge" / "Dockerfile").read_text()
    lock = json.loads((checkout / "bridge" / "openclaw" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/openclaw"]["version"] == NEWER
    # and the person is told which tracked files changed and to test and commit them
    assert f"these tracked files now pin OpenClaw {NEWER}: {', '.join(PINNED_FILES)}" in out
    assert "run make test, then commit them" in out
    # and the image was built from the new lock with that version (the builder checks they agree, as
    # the Dockerfile does) and the stack runs it by digest
    new_tag = expected_tag(NEWER)
    assert f"OPENCLAW_VERSION={NEWER}" in rehearsal.call("docker buildx build")
    assert rehearsal.call("docker buildx build")[-1] == str(checkout)
    parameters = stack_parameters()
    assert parameters["BridgeImageUri"] == f"{REPOSITORY_URI}@{image_digests()[new_tag]}" != first_image
    assert parameters["OpenClawVersion"] == NEWER
    # and the web chat, unchanged, was not uploaded again
    assert invalidations(rehearsal.resources["WebDistributionId"]) == 1
    assert (
        f"changed    pinned OpenClaw {NEWER} in {', '.join(PINNED_FILES)} (make test, then commit); "
        "built and pushed the bridge image; deployed the stack"
    ) in out

    # When make deploy runs again, with or without the version
    for argv in ((), ("--openclaw-version", NEWER)):
        code, out, err = make_deploy(rehearsal, capsys, *argv)

        # Then nothing is rewritten, built or deployed: the checkout pins that version now
        assert code == 0, err
        assert rehearsal.calls == []
        assert pins(checkout) == after
        assert "nothing changed" in out


def test_an_upgrade_npm_cannot_resolve_changes_no_file_and_deploys_nothing(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a deployed stack, and a version the registry does not have
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    before, parameters = pins(checkout), stack_parameters()
    monkeypatch.setenv(NPM_EXIT_ENV, "1")

    # When make deploy OPENCLAW_VERSION=… runs
    code, _, err = make_deploy(rehearsal, capsys, "--openclaw-version", NEWER)

    # Then it says what failed and that nothing changed; no file, image or stack was touched
    assert code == 1
    assert f"npm could not resolve openclaw@{NEWER} (exit 1)" in err and "no file was changed" in err
    assert rehearsal.programs() == ["npm install"]
    assert pins(checkout) == before
    assert stack_parameters() == parameters


def test_a_version_that_is_not_a_release_is_refused_before_npm(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], checkout: Path
) -> None:
    # Given a deployed stack
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0

    # When OPENCLAW_VERSION is not a release number (an npm tag, a path)
    code, _, err = make_deploy(rehearsal, capsys, "--openclaw-version", "latest")

    # Then it is refused, and nothing ran
    assert code == 2
    assert "'latest' is not an OpenClaw release version" in err
    assert rehearsal.calls == []


def test_rollback_redeploys_the_previous_image_without_building_or_touching_the_pins(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], checkout: Path
) -> None:
    # Given a stack upgraded from the pinned OpenClaw to another
    pinned = openclaw_version()
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    first_image = stack_parameters()["BridgeImageUri"]
    assert make_deploy(rehearsal, capsys, "--openclaw-version", NEWER)[0] == 0
    upgraded = pins(checkout)

    # When make deploy ARGS=--rollback runs
    code, out, err = make_deploy(rehearsal, capsys, "--rollback")

    # Then nothing was resolved, built or pushed; the stack runs the first image and its OpenClaw again
    assert code == 0, err
    assert rehearsal.programs() == ["sam build", "sam deploy"]
    assert stack_parameters()["BridgeImageUri"] == first_image
    assert stack_parameters()["OpenClawVersion"] == pinned
    assert f"rolling back from {REPOSITORY_URI}@" in out
    # and the checkout keeps its newer pins, which the output says
    assert pins(checkout) == upgraded
    assert (
        f"the repository still pins OpenClaw {NEWER}, newer than the image rolled back to (OpenClaw "
        f"{pinned}): the next make deploy without ARGS=--rollback deploys {NEWER} again"
    ) in out

    # When a rollback is asked together with a version
    code, _, err = make_deploy(rehearsal, capsys, "--rollback", "--openclaw-version", NEWER)

    # Then that is refused before anything runs
    assert code == 2
    assert "--rollback redeploys an earlier image as it was built" in err
    assert rehearsal.calls == []


def test_rollback_without_an_earlier_image_says_so(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a stack deployed once
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0

    # When a rollback is asked for
    code, _, err = make_deploy(rehearsal, capsys, "--rollback")

    # Then there is nothing to go back to, and nothing ran
    assert code == 2
    assert "nothing to roll back to" in err
    assert rehearsal.calls == []


# ------------------------------------------------------------------------------------------- failures


def test_without_a_container_builder_it_stops_before_the_stack_and_says_what_to_install(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a machine with neither Docker, Podman nor Finch
    rehearsal.installed -= {"docker"}

    # When make deploy runs
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then it exits 2 with what to install; sam never ran and the main stack does not exist
    assert code == 2
    assert "no container builder found: install Docker with buildx" in err
    assert "Traceback" not in err
    assert not any(name.startswith("sam") for name in rehearsal.programs())
    names = [s["StackName"] for s in boto3.client("cloudformation").list_stacks()["StackSummaries"]]
    assert names == [f"{STACK}-images"]


def test_podman_builds_then_pushes(rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a machine with Podman only
    rehearsal.installed = (rehearsal.installed - {"docker"}) | {"podman"}

    # When make deploy runs
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then podman built for arm64 (cross-building via --platform), then pushed the same tag
    assert code == 0, err
    assert rehearsal.programs() == [
        "podman --version",
        "podman login",
        "podman build",
        "podman push",
        "sam build",
        "sam deploy",
    ]
    image = f"{REPOSITORY_URI}:{expected_tag(openclaw_version())}"
    assert rehearsal.call("podman build")[:8] == [
        "podman", "build", "--platform", "linux/arm64",
        "--file", str(REPOSITORY / "bridge" / "Dockerfile"), "--tag", image,
    ]  # fmt: skip
    assert rehearsal.call("podman push") == ["podman", "push", image]


def test_with_the_soci_cli_the_stack_runs_the_soci_enabled_image_and_a_second_run_finds_it(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a machine with Docker, the SOCI CLI and ORAS
    rehearsal.installed |= {"soci", "oras"}
    tag = expected_tag(openclaw_version())

    # When make deploy runs
    code, out, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then after the push ORAS logged in (password on stdin), fetched the pushed image into a layout, soci
    # packed it with its SOCI index for the task's platform without containerd, and ORAS pushed the result
    assert code == 0, err
    assert rehearsal.programs() == [
        "docker buildx version",
        "docker login",
        "docker buildx build",
        "oras login",
        "oras cp --to-oci-layout",
        "soci convert",
        "oras cp --from-oci-layout",
        "sam build",
        "sam deploy",
    ]
    assert rehearsal.stdins == [ecr_password() + "\n"] * 2
    host = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert rehearsal.call("oras login") == ["oras", "login", "--username", "AWS", "--password-stdin", host]
    fetch = rehearsal.call("oras cp --to-oci-layout")
    assert fetch[:4] == ["oras", "cp", "--to-oci-layout", f"{REPOSITORY_URI}:{tag}"]
    source = fetch[4].removesuffix(":image")
    convert = rehearsal.call("soci convert")
    assert convert[:-1] == [
        "soci", "convert", "--standalone", "--format", "oci-dir", "--platform", "linux/arm64", source,
    ]  # fmt: skip
    push = rehearsal.call("oras cp --from-oci-layout")
    assert push[3].startswith(convert[-1] + "@sha256:") and push[4] == f"{REPOSITORY_URI}:{tag}-soci"
    # and the stack runs the SOCI-enabled image (an image index holding the image and its SOCI index)
    indexed = image_digests()[f"{tag}-soci"]
    assert (
        stack_parameters()["BridgeImageUri"]
        == f"{REPOSITORY_URI}@{indexed}"
        != (f"{REPOSITORY_URI}@{image_digests()[tag]}")
    )
    assert f"pushed {REPOSITORY_URI}:{tag}-soci ({indexed}): Fargate lazy-loads it" in out
    assert "no SOCI index" not in out

    # When make deploy runs again with nothing changed
    code, out, err = make_deploy(rehearsal, capsys)

    # Then the indexed image is found in ECR: nothing is built, fetched, converted or pushed
    assert code == 0, err
    assert rehearsal.calls == []
    assert f"image {tag} and its SOCI index are in ECR already" in out


def test_a_failed_soci_index_still_deploys_the_image_and_says_why(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the SOCI CLI installed but broken
    rehearsal.installed |= {"soci", "oras"}
    rehearsal.failing.add("soci")
    tag = expected_tag(openclaw_version())

    # When make deploy runs
    code, out, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then the deploy succeeds with the plain image (only its start is slower), and the output says which
    # step failed with the tool's own words
    assert code == 0, err
    assert stack_parameters()["BridgeImageUri"] == f"{REPOSITORY_URI}@{image_digests()[tag]}"
    assert f"{tag}-soci" not in image_digests()
    assert "warning: no SOCI index (building its SOCI index (soci convert) failed: Error: soci failed)" in out
    assert "oras cp --from-oci-layout" not in rehearsal.programs()


def test_missing_credentials_are_a_clear_error_before_anything_runs(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a shell with no AWS credentials anywhere
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    # When make deploy runs
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then it says how to provide them, and nothing ran
    assert code == 2
    assert "no usable AWS credentials: run `aws configure`" in err
    assert rehearsal.calls == []


def test_a_refused_change_set_is_shown_as_the_resource_and_its_reason(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a deployed stack, and an update CloudFormation will refuse on the task definition
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    reason = 'Resource handler returned message: "Invalid request provided: Create TaskDefinition: No Fargate configuration exists for given values: 512 CPU, 16384 memory"'  # noqa: E501
    rehearsal.refuse = Refusal("BridgeTaskDefinition", "AWS::ECS::TaskDefinition", reason)

    # When make deploy runs with new sizes
    code, _, err = make_deploy(
        rehearsal, capsys, "--parameter", "TaskCpu=512", "--parameter", "TaskMemory=16384"
    )

    # Then it exits 1 naming the resource and CloudFormation's reason, not a stack trace or the cascade
    assert code == 1
    assert f"stack {STACK} failed:\n  BridgeTaskDefinition (AWS::ECS::TaskDefinition): {reason}" in err
    assert "Resource update cancelled" not in err
    assert "Traceback" not in err
    # and the next run tries again (the failed deploy is not remembered as deployed)
    rehearsal.refuse = None
    code, _, err = make_deploy(rehearsal, capsys)
    assert code == 0, err
    assert rehearsal.programs() == ["sam build", "sam deploy"]
    assert stack_parameters()["TaskCpu"] == "512"


def test_a_failed_first_creation_is_explained_and_the_next_run_says_to_delete_it(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an account where CloudFormation refuses to create the alarm topic's subscription
    reason = "Invalid parameter: Email address"
    rehearsal.refuse = Refusal("AlarmSubscription", "AWS::SNS::Subscription", reason)

    # When the first deploy runs
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then the resource and reason are shown
    assert code == 1
    assert f"stack {STACK} failed:\n  AlarmSubscription (AWS::SNS::Subscription): {reason}" in err

    # When make deploy runs again
    code, _, err = make_deploy(rehearsal, capsys)

    # Then it does not try an update CloudFormation would refuse: it says to delete the stack first
    assert code == 2
    assert "failed and CloudFormation cannot update it: fix the cause, delete it (make destroy" in err
    assert not any(name.startswith("sam") for name in rehearsal.programs())


def test_a_key_pasted_on_the_command_line_is_refused_without_being_repeated(
    aws: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a key typed where a flag should be
    # When the command line is read
    with pytest.raises(SystemExit) as exited:
        deploy.parse_args(["--stack", STACK, API_KEY])

    # Then it exits 2 without printing the key
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert "unrecognized arguments (not shown in case one is a secret" in err
    assert_no_secret(err)


def test_an_unknown_parameter_or_a_quote_is_refused_before_anything_runs(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first run with a parameter the template does not have
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN, "--parameter", "TaskCPU=512")

    # Then it is refused, naming it
    assert code == 2
    assert "--parameter TaskCPU: not a template parameter" in err

    # When a value holds a quote (sam's --parameter-overrides would cut it there)
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN, "--parameter", 'TelegramAllowedUserIds=1"2')

    # Then that is refused too; nothing ran and no stack exists
    assert code == 2
    assert "--parameter TelegramAllowedUserIds: quotes and backslashes are not allowed" in err
    assert rehearsal.calls == []
    assert boto3.client("cloudformation").list_stacks()["StackSummaries"] == []


# ------------------------------------------------------------------------------------------- secrets


def test_the_bot_token_and_api_key_reach_ssm_and_telegram_but_no_output_argument_or_error(
    rehearsal: Rehearsal,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    telegram: TelegramSimulator,
) -> None:
    # Given a bot token in the environment
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)

    # When make deploy runs (every output, argv and answers file is scanned by make_deploy)
    code, out, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then both secrets are SecureStrings and Telegram posts to the stack's webhook
    assert code == 0, err
    assert secure_parameter(f"/{STACK}/secrets/telegram-bot-token")["Value"] == BOT_TOKEN
    assert secure_parameter(f"/{STACK}/secrets/telegram-bot-token")["Type"] == "SecureString"
    webhooks = [params for method, params in telegram.calls if method == "setWebhook"]
    assert [hook["url"] for hook in webhooks] == [rehearsal.resources["TelegramWebhookUrl"]]
    assert "Telegram   webhook registered" in out

    # When the next run has no token in the environment and a refused change
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    code, out, err = make_deploy(rehearsal, capsys)

    # Then Telegram is only asked where it posts (no second registration)
    assert code == 0, err
    assert [method for method, _ in telegram.calls].count("setWebhook") == 1
    assert "Telegram   webhook registered" in out

    # And when an AWS call fails while the secrets are in memory, the error holds neither
    rehearsal.refuse = Refusal("Topic", "AWS::SNS::Topic", f"bad value {API_KEY[:4]}…")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    code, _, err = make_deploy(rehearsal, capsys, "--replace-secrets", "--alarm-email", "ops@example.com")
    assert code == 1
    assert "Topic (AWS::SNS::Topic)" in err


def test_telegram_out_of_reach_on_a_later_run_does_not_fail_the_deploy(
    rehearsal: Rehearsal,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    telegram: TelegramSimulator,
) -> None:
    # Given a stack deployed with a bot
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", BOT_TOKEN)
    assert make_deploy(rehearsal, capsys, *FIRST_RUN)[0] == 0
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")

    # When the next run cannot reach Telegram (nothing listens where the Bot API was)
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9")
    code, out, err = make_deploy(rehearsal, capsys)

    # Then the deploy succeeds and says the webhook could not be checked; nothing was re-registered
    assert code == 0, err
    assert "Telegram   the stored bot's webhook could not be checked (Telegram did not answer)" in out
    assert [method for method, _ in telegram.calls].count("setWebhook") == 1


def test_a_secret_refused_by_ssm_is_not_in_the_error(
    rehearsal: Rehearsal, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given SSM that refuses the key and quotes it back (as validation errors may)
    real_client = deploy.Aws.client

    class QuotingSsm:
        def __init__(self, ssm: Any) -> None:
            self.ssm = ssm

        def __getattr__(self, name: str) -> Any:
            return getattr(self.ssm, name)

        def put_parameter(self, **kwargs: Any) -> None:
            from botocore.exceptions import ClientError

            message = f"Value '{kwargs['Value']}' failed to satisfy constraint"
            raise ClientError({"Error": {"Code": "ValidationException", "Message": message}}, "PutParameter")

    def client(self: deploy.Aws, service: str) -> Any:
        made = real_client(self, service)
        return QuotingSsm(made) if service == "ssm" else made

    monkeypatch.setattr(deploy.Aws, "client", client)

    # When make deploy runs
    code, _, err = make_deploy(rehearsal, capsys, *FIRST_RUN)

    # Then it fails with AWS's words, the key blanked out
    assert code == 1
    assert "ValidationException: Value '***' failed to satisfy constraint" in err


# ------------------------------------------------------------------------------------------- the image tag


def write_context(root: Path) -> Path:
    files = {
        "bridge/Dockerfile": (
            "FROM base AS deps\nCOPY bridge/requirements.txt /r.txt\nFROM base\n"
            "COPY --from=deps /opt /opt\nCOPY layers/shared/pkg \\\n  /app/pkg\n"
            'COPY ["bridge/app", "/app/app"]\n'
        ),
        "bridge/requirements.txt": "boto3==1\n",
        "bridge/app/main.py": "print(1)\n",
        "layers/shared/pkg/mod.py": "X = 1\n",
        "README.md": "not copied\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "bridge" / "Dockerfile"


def test_the_tag_changes_with_what_the_image_is_built_from_and_nothing_else(tmp_path: Path) -> None:
    # Given a build context and its tag
    dockerfile = write_context(tmp_path)

    def tag(version: str = "1") -> str:
        return context_tag(tmp_path, dockerfile, {"OPENCLAW_VERSION": version}, PLATFORM)

    before = tag()

    # Then the Dockerfile's sources are found (shell and JSON form, continued lines, not --from)
    assert dockerfile_sources(dockerfile) == ["bridge/requirements.txt", "layers/shared/pkg", "bridge/app"]
    # and caches and files it does not copy leave the tag alone
    (tmp_path / "layers/shared/pkg/__pycache__").mkdir()
    (tmp_path / "layers/shared/pkg/__pycache__/mod.cpython-312.pyc").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("changed\n")
    assert tag() == before
    # while a copied file, the Dockerfile or a build argument change it
    seen = {before}
    (tmp_path / "layers/shared/pkg/mod.py").write_text("X = 2\n")
    seen.add(tag())
    dockerfile.write_text(dockerfile.read_text() + "USER 1\n")
    seen.add(tag())
    seen.add(tag("2"))
    assert len(seen) == 4


def test_the_real_dockerfiles_sources_exist() -> None:
    # Given the repository's bridge/Dockerfile
    sources: Sequence[str] = dockerfile_sources(REPOSITORY / "bridge" / "Dockerfile")

    # Then every path it copies from the context is in the repository (else the tag would miss it)
    assert sources
    assert all((REPOSITORY / source).exists() for source in sources), sources


# ------------------------------------------------------------------------------------------- waiting


class SettlingStacks:
    """DescribeStacks of a stack that passes through the given statuses, one per call."""

    def __init__(self, *statuses: str) -> None:
        self.statuses = list(statuses)

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return {"Stacks": [{"StackName": StackName, "StackStatus": status}]}


def test_waiting_for_a_stack_shows_each_status_it_passes() -> None:
    # Given a stack still being created
    stacks = SettlingStacks("CREATE_IN_PROGRESS", "CREATE_IN_PROGRESS", "CREATE_COMPLETE")
    out, slept = io.StringIO(), []

    # When the deploy waits for it
    final = wait_until_settled(stacks, "s-images", out, poll_seconds=5, sleep=slept.append)  # type: ignore[arg-type]

    # Then each status was shown once, the polls were spaced, and the final status is returned
    assert final == "CREATE_COMPLETE"
    assert out.getvalue() == "  s-images: CREATE_IN_PROGRESS\n  s-images: CREATE_COMPLETE\n"
    assert slept == [5, 5]


def test_a_stack_that_never_settles_is_reported_not_waited_on_forever() -> None:
    # Given a stack stuck in progress
    stacks = SettlingStacks("UPDATE_IN_PROGRESS")

    # When the deploy waits with no time left
    with pytest.raises(Failure) as failed:
        wait_until_settled(stacks, "s", io.StringIO(), timeout_seconds=0, sleep=lambda _: None)  # type: ignore[arg-type]

    # Then it says so and what to do
    assert str(failed.value) == "stack s is still UPDATE_IN_PROGRESS after 0 minutes: run again later"
