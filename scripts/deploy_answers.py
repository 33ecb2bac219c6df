"""The deploy's answers: what the first run of scripts/deploy.py asked (or its flags said), kept in
`.deploy/<stack>.json` (git-ignored, no secret among them) so that later runs ask nothing, and the console
that asks them."""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from scripts.aws_errors import UsageError
from scripts.stacks import check_stack_name
from serverless_openclaw.settings import UNAVAILABLE_PROVIDERS

ANSWERS_DIR = Path(__file__).resolve().parent.parent / ".deploy"
DEFAULT_STACK = "serverless-openclaw"
MANAGED_PARAMETERS = frozenset(
    {
        "BridgeImageUri",
        "OpenClawVersion",
        "ModelProvider",
        "ModelId",
        "ModelBaseUrl",
        "AlarmEmail",
    }
)
"""Stack parameters the deploy sets from its answers; any other one can be given with --parameter."""


def providers(template: Mapping[str, Any]) -> tuple[str, ...]:
    """The model providers the stack accepts: its template's ModelProvider parameter's AllowedValues."""
    return tuple(str(value) for value in template["Parameters"]["ModelProvider"]["AllowedValues"])


@dataclass
class Deployment:
    """One deploy that reached the stack: which image, which OpenClaw, which inputs."""

    image: str
    openclaw: str
    fingerprint: str
    at: str


@dataclass
class Answers:
    """What the first run asked (or the flags said); later runs read it and ask nothing."""

    stack: str
    region: str
    provider: str
    owner_email: str
    alarm_email: str = ""
    model_id: str = ""
    model_base_url: str = ""
    telegram: bool | None = None
    """Whether a bot was wanted: None until asked (or a token is given)."""
    parameters: dict[str, str] = field(default_factory=dict)
    deployed: list[Deployment] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """Where these answers are kept."""
        return ANSWERS_DIR / f"{self.stack}.json"

    def save(self) -> None:
        """Write the answers (no secret is ever among them)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        (self.path.parent / ".gitignore").write_text("*\n", encoding="utf-8")
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.path)


def load_answers(stack: str | None) -> Answers | None:
    """The kept answers of this stack (or of the only stack deployed from here); None before a first run."""
    if stack is None:
        kept = sorted(ANSWERS_DIR.glob("*.json"))
        if len(kept) > 1:
            names = ", ".join(path.stem for path in kept)
            raise UsageError(
                f"answers of several stacks are kept in {ANSWERS_DIR} ({names}): pass --stack NAME"
            )
        if not kept:
            return None
        path = kept[0]
    else:
        path = ANSWERS_DIR / f"{stack}.json"
        if not path.exists():
            return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        deployed = [Deployment(**item) for item in data.pop("deployed", [])]
        # Kept by the first version of this script; the checkout's pin is now the only choice of version.
        data.pop("openclaw_version", None)
        return Answers(**data, deployed=deployed)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"cannot read {path} ({type(exc).__name__}): fix or delete it and answer again"
        ) from None


@dataclass(frozen=True)
class Console:
    """Where the script talks to the person: output, and questions only when a person is there."""

    out: TextIO
    interactive: bool
    ask: Callable[[str], str] = input
    ask_hidden: Callable[[str], str] = getpass.getpass

    def question(self, text: str, default: str = "") -> str:
        """The typed answer (the default on Enter)."""
        shown = f"{text} [{default}]: " if default else f"{text}: "
        return self.ask(shown).strip() or default


def gather_answers(
    args: argparse.Namespace, region_default: str | None, console: Console, template: Mapping[str, Any]
) -> Answers:
    """The kept answers with the flags applied, asking (once) for what is still missing."""
    answers = load_answers(args.stack)
    if answers is None:
        answers = first_answers(args, region_default, console, template)
    apply_flags(answers, args)
    if answers.provider == "openai-compatible" and not answers.model_base_url and console.interactive:
        answers.model_base_url = console.question("Base URL of the openai-compatible API (https://…)")
    check_answers(answers, template)
    return answers


def first_answers(
    args: argparse.Namespace, region_default: str | None, console: Console, template: Mapping[str, Any]
) -> Answers:
    """The answers of a first run: from the flags, else asked, else (without a terminal) a clear error."""
    values = {
        "stack": args.stack,
        "region": args.region,
        "provider": args.provider,
        "owner_email": args.owner_email,
        "alarm_email": args.alarm_email,
    }
    if not console.interactive:
        values["stack"] = values["stack"] or DEFAULT_STACK
        values["region"] = values["region"] or region_default
        values["alarm_email"] = values["alarm_email"] or ""
        missing = [f"--{key.replace('_', '-')}" for key, value in values.items() if value is None]
        if missing:
            raise UsageError(
                "this first deploy runs without a terminal, so nothing can be asked: "
                f"pass {', '.join(missing)} (see python scripts/deploy.py --help)"
            )
        return Answers(**values)
    print("First deploy of this clone: a few questions (kept in .deploy/, asked once).", file=console.out)
    if values["stack"] is None:
        values["stack"] = console.question("Stack name", DEFAULT_STACK)
    if values["region"] is None:
        values["region"] = console.question("AWS region", region_default or "us-east-1")
    if values["provider"] is None:
        values["provider"] = console.question(
            f"Model provider ({', '.join(providers(template))})", "anthropic"
        )
    if values["alarm_email"] is None:
        values["alarm_email"] = console.question("E-mail for alarms (Enter for none)")
    if values["owner_email"] is None:
        values["owner_email"] = console.question("Your e-mail (your login to the web chat)")
    return Answers(**values)


def apply_flags(answers: Answers, args: argparse.Namespace) -> None:
    """Flags given on this run replace the kept answers."""
    for key in ("region", "provider", "owner_email", "alarm_email", "model_id", "model_base_url"):
        value = getattr(args, key)
        if value is not None:
            setattr(answers, key, value)
    if args.telegram is not None:
        answers.telegram = args.telegram
    for item in args.parameter:
        key, separator, value = item.partition("=")
        if not separator:
            raise UsageError("--parameter takes KEY=VALUE (one was given without '=')")
        answers.parameters[key] = value


def check_answers(answers: Answers, template: Mapping[str, Any]) -> None:
    """UsageError for an answer the stack would refuse (before anything is created)."""
    check_stack_name(answers.stack)
    if answers.provider in UNAVAILABLE_PROVIDERS:
        raise UsageError(f"model provider {answers.provider}: {UNAVAILABLE_PROVIDERS[answers.provider]}")
    accepted = providers(template)
    if answers.provider not in accepted:
        raise UsageError(f"unknown model provider {answers.provider!r}: one of {', '.join(accepted)}")
    if "@" not in answers.owner_email or answers.owner_email.strip() != answers.owner_email:
        raise UsageError(f"{answers.owner_email!r} is not an e-mail address (--owner-email)")
    if answers.provider == "openai-compatible" and not answers.model_base_url:
        raise UsageError("provider openai-compatible needs its base URL: pass --model-base-url https://…")
    given = {"--alarm-email": answers.alarm_email, "--model-id": answers.model_id}
    given |= {"--model-base-url": answers.model_base_url}
    given |= {f"--parameter {key}": value for key, value in answers.parameters.items()}
    for flag, value in given.items():
        if '"' in value or "\\" in value:  # sam's --parameter-overrides cannot carry them
            raise UsageError(f"{flag}: quotes and backslashes are not allowed")
    declared = template.get("Parameters") or {}
    for key in answers.parameters:
        if key in MANAGED_PARAMETERS or key not in declared:
            raise UsageError(
                f"--parameter {key}: not a template parameter this flag may set (see docs/template.md)"
            )
