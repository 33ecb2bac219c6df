"""A rough monthly cost of a stack for the sizes it is deployed with, each line with its assumption.

    python scripts/costs.py                                   # template.yaml's defaults
    python scripts/costs.py TaskCpu=2048 TaskMemory=4096 AgentHoursPerMonth=120

`describe(parameters, region)` is what `make deploy` prints in its closing block. The sizes come from the
template's parameters (what is not given takes template.yaml's default); the usage is a stated assumption
(`AgentHoursPerMonth`, `AgentStartsPerMonth` may be given alongside the parameters). Prices are us-east-1
list prices, dated below, before free tiers: other regions differ, and AWS changes prices. The model
provider's own bill (tokens) is not part of it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runnable as `python scripts/costs.py` from anywhere: the template reader lives in local/, the task's
# prices in the shared package.
_REPO = Path(__file__).resolve().parent.parent
for _path in (_REPO, _REPO / "layers" / "shared"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from local.template import load_template  # noqa: E402
from serverless_openclaw.task_prices import FARGATE_ARM_GB_HOUR as FARGATE_ARM_GB_HOUR  # noqa: E402
from serverless_openclaw.task_prices import FARGATE_ARM_VCPU_HOUR as FARGATE_ARM_VCPU_HOUR  # noqa: E402
from serverless_openclaw.task_prices import FARGATE_SPOT_DISCOUNT as FARGATE_SPOT_DISCOUNT  # noqa: E402
from serverless_openclaw.task_prices import PRICES_AS_OF as PRICES_AS_OF  # noqa: E402
from serverless_openclaw.task_prices import PUBLIC_IPV4_HOUR as PUBLIC_IPV4_HOUR  # noqa: E402

# --------------------------------------------------------------------------------------------------------
# us-east-1 list prices (USD) as of PRICES_AS_OF; the running task's (Fargate, its public IPv4 address)
# are in serverless_openclaw/task_prices.py, shared with the settings dialog's figures
# --------------------------------------------------------------------------------------------------------
FARGATE_STORAGE_GB_HOUR = 0.000111
"""Ephemeral storage above the 20 GB every task gets free, per GB-hour."""
FARGATE_FREE_STORAGE_GB = 20
LAMBDA_ARM_GB_SECOND = 0.0000133334
"""Lambda on arm64, per GB-second."""
LAMBDA_REQUEST = 0.20 / 1_000_000
DYNAMODB_WRITE_UNIT = 0.625 / 1_000_000
"""On-demand write request unit."""
DYNAMODB_READ_UNIT = 0.125 / 1_000_000
"""On-demand read request unit."""
DYNAMODB_GB_MONTH = 0.25
DYNAMODB_PITR_GB_MONTH = 0.20
"""Point-in-time recovery (every table has it on)."""
S3_GB_MONTH = 0.023
S3_PUT = 0.005 / 1000
S3_GET = 0.0004 / 1000
CLOUDFRONT_GB = 0.085
"""Per GB out to viewers past the always-free 1 TB a month (a one-person chat never reaches it)."""
CLOUDFRONT_FREE_GB = 1024
HTTP_API_REQUEST = 1.00 / 1_000_000
WEBSOCKET_MESSAGE = 1.00 / 1_000_000
WEBSOCKET_CONNECTION_MINUTE = 0.25 / 1_000_000
ALARM_MONTH = 0.10
"""A standard-resolution CloudWatch alarm on one metric."""
LOGS_INGEST_GB = 0.50
LOGS_STORE_GB_MONTH = 0.03
SSM_STANDARD_PARAMETER_MONTH = 0.0
"""Standard-tier parameters (SecureStrings included, with the AWS-managed key) cost nothing to keep."""
ECR_GB_MONTH = 0.10
COGNITO_FREE_USERS = 10_000
"""Monthly active users a user pool serves free (Lite and Essentials tiers)."""

# --------------------------------------------------------------------------------------------------------
# Usage assumed when not given
# --------------------------------------------------------------------------------------------------------
DEFAULT_AGENT_HOURS = 60.0
"""Hours a month someone is chatting with the agent: about two hours a day."""
DEFAULT_AGENT_STARTS = 60.0
"""Times a month the agent starts (two a day); each then runs IdleTimeoutMinutes past its last message."""
MESSAGES_PER_HOUR = 50
"""Messages sent while chatting."""
FRAMES_PER_REPLY = 40
"""WebSocket frames pushed per reply (streamed text, status, end)."""
HEARTBEAT_SECONDS = 30
"""The bridge's heartbeat while its task runs (HEARTBEAT_INTERVAL_SECONDS in the task definition)."""
WATCHDOG_RUNS = 30 * 24 * 12
"""The watchdog runs every five minutes, all month."""
LAMBDA_SECONDS = 0.15
"""Average billed duration of a function call."""
STORED_GB = 1.0
"""The agent's files and their kept versions in the data bucket."""
TABLES_GB = 0.1
"""Conversations and the other tables together."""
BACKUP_FILES_PER_START = 200
"""Objects written by the backups of one agent session."""
LOGS_GB = 0.3
"""Log lines a month from the functions, the APIs' access logs and the agent task."""
WEB_GB = 1.0
"""The web chat's page and assets served a month."""
IMAGE_GB = 0.5
"""A compressed bridge image in ECR."""
IMAGES_KEPT = 3
"""Images ECR keeps (the current, the one a rollback returns to, one more)."""
WRITES_PER_MESSAGE = 12
"""DynamoDB write units one message costs (inbox, conversation, task state, idempotency, claims)."""
READS_PER_MESSAGE = 20


@dataclass(frozen=True)
class CostLine:
    """One service's share of the month: what it is, what it costs, and what that rests on."""

    item: str
    dollars: float
    assumption: str


@dataclass(frozen=True)
class Usage:
    """How much the stack is used in a month, derived from the stated assumptions and the parameters."""

    agent_hours: float
    starts: float
    idle_minutes: float

    @property
    def task_hours(self) -> float:
        """Hours the agent's task runs: the chatting, plus the idle wait after each session."""
        return self.agent_hours + self.starts * self.idle_minutes / 60

    @property
    def messages(self) -> float:
        """Messages sent in the month."""
        return self.agent_hours * MESSAGES_PER_HOUR


def template_defaults(template: Mapping[str, Any]) -> dict[str, str]:
    """Every template parameter's default, as a string (what CloudFormation would use when not given)."""
    declared = template.get("Parameters") or {}
    return {name: str(spec.get("Default", "")) for name, spec in declared.items() if "Default" in spec}


def count_resources(template: Mapping[str, Any], resource_type: str) -> int:
    """How many resources of this type the template declares."""
    return sum(
        1 for resource in (template.get("Resources") or {}).values() if resource.get("Type") == resource_type
    )


def _number(parameters: Mapping[str, str], name: str, default: float | None = None) -> float:
    """A numeric parameter; ValueError naming it when it is missing or not a number."""
    raw = parameters.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"{name} is not set and template.yaml has no default for it")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {raw!r}")
    return value


def _money(dollars: float) -> str:
    return f"${dollars:,.2f}"


def fargate_lines(parameters: Mapping[str, str], usage: Usage) -> list[CostLine]:
    """The agent's task: compute (Spot), storage above the free 20 GB, its public address."""
    vcpu = _number(parameters, "TaskCpu") / 1024
    memory_gb = _number(parameters, "TaskMemory") / 1024
    storage_gb = _number(parameters, "TaskEphemeralStorageGiB")
    hours = usage.task_hours
    on_demand = hours * (vcpu * FARGATE_ARM_VCPU_HOUR + memory_gb * FARGATE_ARM_GB_HOUR)
    spot = on_demand * (1 - FARGATE_SPOT_DISCOUNT)
    extra_storage = max(0.0, storage_gb - FARGATE_FREE_STORAGE_GB)
    running = (
        f"{usage.agent_hours:g} h of chat + {usage.starts:g} starts × {usage.idle_minutes:g} min idle "
        f"before the watchdog stops it = {hours:g} h"
    )
    return [
        CostLine(
            f"Fargate Spot, {vcpu:g} vCPU / {memory_gb:g} GB ARM",
            spot,
            f"{running}; Spot ~{FARGATE_SPOT_DISCOUNT:.0%} below on-demand "
            f"({_money(on_demand)} if it all ran on-demand, the fallback when Spot has no capacity)",
        ),
        CostLine(
            f"Fargate storage, {storage_gb:g} GB",
            hours * extra_storage * FARGATE_STORAGE_GB_HOUR,
            f"{extra_storage:g} GB above the free {FARGATE_FREE_STORAGE_GB} GB, for {hours:g} h",
        ),
        CostLine(
            "Public IPv4 of the task", hours * PUBLIC_IPV4_HOUR, f"${PUBLIC_IPV4_HOUR}/h for {hours:g} h"
        ),
    ]


def control_plane_lines(usage: Usage, functions: int, tables: int) -> list[CostLine]:
    """Lambda, the two APIs and DynamoDB: driven by messages, heartbeats and the watchdog."""
    heartbeats = usage.task_hours * 3600 / HEARTBEAT_SECONDS
    calls = usage.messages * 2 + heartbeats + WATCHDOG_RUNS + usage.starts * 4
    gb_seconds = calls * LAMBDA_SECONDS * 0.25  # the functions' 256 MB (Globals.MemorySize)
    frames = usage.messages * FRAMES_PER_REPLY + heartbeats * 2
    connection_minutes = (usage.agent_hours + usage.task_hours) * 60
    http_requests = usage.messages * 0.5 + usage.starts * 5
    writes = usage.messages * WRITES_PER_MESSAGE + heartbeats + WATCHDOG_RUNS * 0.1
    reads = usage.messages * READS_PER_MESSAGE + heartbeats * 2 + WATCHDOG_RUNS
    return [
        CostLine(
            f"Lambda, {functions} functions (arm64, 256 MB)",
            gb_seconds * LAMBDA_ARM_GB_SECOND + calls * LAMBDA_REQUEST,
            f"{calls:,.0f} calls × {LAMBDA_SECONDS} s: {usage.messages:,.0f} messages, "
            f"{heartbeats:,.0f} heartbeats, {WATCHDOG_RUNS:,} watchdog runs",
        ),
        CostLine(
            "API Gateway WebSocket",
            frames * WEBSOCKET_MESSAGE + connection_minutes * WEBSOCKET_CONNECTION_MINUTE,
            f"{frames:,.0f} frames ({FRAMES_PER_REPLY} per reply, heartbeats), {connection_minutes:,.0f} "
            "connection-minutes",
        ),
        CostLine(
            "API Gateway HTTP API",
            http_requests * HTTP_API_REQUEST,
            f"{http_requests:,.0f} requests (page loads, settings)",
        ),
        CostLine(
            f"DynamoDB on-demand ({tables} tables)",
            writes * DYNAMODB_WRITE_UNIT
            + reads * DYNAMODB_READ_UNIT
            + TABLES_GB * (DYNAMODB_GB_MONTH + DYNAMODB_PITR_GB_MONTH),
            f"{writes:,.0f} writes, {reads:,.0f} reads, {TABLES_GB:g} GB kept with point-in-time recovery",
        ),
    ]


def storage_lines(usage: Usage, parameters: Mapping[str, str], alarms: int) -> list[CostLine]:
    """S3, CloudFront, Cognito, CloudWatch, SSM and ECR."""
    puts = usage.starts * BACKUP_FILES_PER_START
    retention_days = _number(parameters, "LogRetentionDays")
    logs_kept_gb = LOGS_GB * min(retention_days, 365) / 30
    return [
        CostLine(
            "S3 data bucket",
            STORED_GB * S3_GB_MONTH + puts * S3_PUT + puts * S3_GET,
            f"{STORED_GB:g} GB of agent files and versions, {puts:,.0f} uploads and as many downloads",
        ),
        CostLine(
            "CloudFront + web bucket",
            max(0.0, WEB_GB - CLOUDFRONT_FREE_GB) * CLOUDFRONT_GB,
            f"{WEB_GB:g} GB served, inside the always-free {CLOUDFRONT_FREE_GB} GB",
        ),
        CostLine(
            "Cognito user pool", 0.0, f"under the {COGNITO_FREE_USERS:,} monthly active users that are free"
        ),
        CostLine(f"CloudWatch alarms ({alarms})", alarms * ALARM_MONTH, f"${ALARM_MONTH:.2f} per alarm"),
        CostLine(
            "CloudWatch Logs",
            LOGS_GB * LOGS_INGEST_GB + logs_kept_gb * LOGS_STORE_GB_MONTH,
            f"{LOGS_GB:g} GB written, kept {retention_days:g} days",
        ),
        insights_line(parameters),
        CostLine(
            "SSM SecureStrings",
            SSM_STANDARD_PARAMETER_MONTH,
            "standard tier: provider key, bot token, secret",
        ),
        CostLine(
            "ECR image storage",
            IMAGES_KEPT * IMAGE_GB * ECR_GB_MONTH,
            f"{IMAGES_KEPT} images of ~{IMAGE_GB:g} GB compressed",
        ),
    ]


def insights_line(parameters: Mapping[str, str]) -> CostLine:
    """ECS Container Insights: off by default; when on, billed per metric and not estimated here."""
    setting = parameters.get("ContainerInsights", "disabled")
    if setting == "disabled":
        return CostLine("ECS Container Insights", 0.0, "disabled (ContainerInsights=disabled)")
    return CostLine(
        "ECS Container Insights",
        0.0,
        f"{setting}: NOT in the total, billed as CloudWatch custom metrics and performance logs",
    )


def line_items(parameters: Mapping[str, str], template: Mapping[str, Any]) -> list[CostLine]:
    """Every line of the estimate for these parameters (missing ones take the template's defaults)."""
    merged = {**template_defaults(template), **{k: v for k, v in parameters.items() if v != ""}}
    usage = Usage(
        agent_hours=_number(merged, "AgentHoursPerMonth", DEFAULT_AGENT_HOURS),
        starts=_number(merged, "AgentStartsPerMonth", DEFAULT_AGENT_STARTS),
        idle_minutes=_number(merged, "IdleTimeoutMinutes"),
    )
    functions = count_resources(template, "AWS::Serverless::Function")
    alarms = count_resources(template, "AWS::CloudWatch::Alarm")
    return [
        *fargate_lines(merged, usage),
        *control_plane_lines(usage, functions, count_resources(template, "AWS::DynamoDB::Table")),
        *storage_lines(usage, merged, alarms),
    ]


def format_lines(lines: Sequence[CostLine], region: str) -> str:
    """The estimate as printed: one line per service with its assumption, then the total."""
    width = max(len(line.item) for line in lines)
    total = sum(line.dollars for line in lines)
    deployed = "" if region == "us-east-1" else f" (this stack: {region})"
    text = [
        f"Monthly cost: rough, us-east-1 list prices of {PRICES_AS_OF} before free tiers, "
        f"region may differ{deployed}"
    ]
    text += [f"  {line.item:<{width}}  {_money(line.dollars):>7}  {line.assumption}" for line in lines]
    text.append(
        f"  {'total':<{width}}  {_money(total):>7}  a month, plus the model provider's bill for tokens"
    )
    return "\n".join(text)


def describe(parameters: Mapping[str, str], region: str) -> str:
    """A rough monthly cost of the stack deployed with these template parameters in this region."""
    return format_lines(line_items(parameters, load_template()), region)


def main(argv: list[str] | None = None) -> int:
    """Print the estimate for NAME=VALUE parameters; exit code 2 for a bad one."""
    parser = argparse.ArgumentParser(prog="costs.py", description="A rough monthly cost of the stack.")
    parser.add_argument("parameters", nargs="*", metavar="NAME=VALUE", help="template parameters or usage")
    parser.add_argument("--region", default="us-east-1", help="where it is deployed (prices are us-east-1's)")
    args = parser.parse_args(argv)
    given = dict(item.split("=", 1) for item in args.parameters if "=" in item)
    bad = [item for item in args.parameters if "=" not in item]
    try:
        if bad:
            raise ValueError(f"expected NAME=VALUE, not {bad[0]!r}")
        print(describe(given, args.region))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
