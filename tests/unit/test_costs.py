"""scripts/costs.py: the monthly estimate follows the chosen sizes, adds up, and says what it assumes."""

from __future__ import annotations

import re

import pytest

from local.template import load_template
from scripts import costs

TEMPLATE = load_template()


def lines_by_item(parameters: dict[str, str]) -> dict[str, costs.CostLine]:
    return {line.item: line for line in costs.line_items(parameters, TEMPLATE)}


def line_starting(parameters: dict[str, str], prefix: str) -> costs.CostLine:
    found = [line for item, line in lines_by_item(parameters).items() if item.startswith(prefix)]
    assert len(found) == 1, f"one line starting {prefix!r} expected, got {found}"
    return found[0]


def test_the_default_task_costs_its_spot_hours_at_the_arm_list_price() -> None:
    # Given the template's defaults: 1 vCPU, 2 GB, a 15-minute idle timeout; 60 h of chat, 60 starts
    line = line_starting({}, "Fargate Spot")

    # Then 75 running hours at 30% of the on-demand ARM price
    hours = 60 + 60 * 15 / 60
    on_demand = hours * (1 * costs.FARGATE_ARM_VCPU_HOUR + 2 * costs.FARGATE_ARM_GB_HOUR)
    assert line.dollars == pytest.approx(on_demand * 0.30)
    assert line.dollars == pytest.approx(0.889, abs=0.001)
    assert line.item == "Fargate Spot, 1 vCPU / 2 GB ARM"
    assert "75 h" in line.assumption and "$2.96" in line.assumption


def test_a_bigger_task_costs_proportionally_more() -> None:
    small = line_starting({"TaskCpu": "1024", "TaskMemory": "2048"}, "Fargate Spot").dollars
    big = line_starting({"TaskCpu": "2048", "TaskMemory": "4096"}, "Fargate Spot").dollars
    assert big == pytest.approx(2 * small)


def test_a_longer_idle_timeout_keeps_the_task_running_longer() -> None:
    # Given a 30-minute idle timeout and the usage assumed by default (60 starts)
    line = line_starting({"IdleTimeoutMinutes": "30"}, "Fargate Spot")
    # Then the task runs 60 h + 60 × 30 min = 90 h
    assert "= 90 h" in line.assumption
    rate = (costs.FARGATE_ARM_VCPU_HOUR + 2 * costs.FARGATE_ARM_GB_HOUR) * (1 - costs.FARGATE_SPOT_DISCOUNT)
    assert line.dollars == pytest.approx(90 * rate)


def test_usage_can_be_given_with_the_parameters() -> None:
    line = line_starting({"AgentHoursPerMonth": "100", "AgentStartsPerMonth": "0"}, "Public IPv4")
    assert line.dollars == pytest.approx(100 * costs.PUBLIC_IPV4_HOUR)


def test_storage_above_the_free_twenty_gb_is_charged_by_the_hour() -> None:
    assert line_starting({"TaskEphemeralStorageGiB": "20"}, "Fargate storage").dollars == 0
    line = line_starting({"TaskEphemeralStorageGiB": "50"}, "Fargate storage")
    assert line.dollars == pytest.approx(75 * 30 * costs.FARGATE_STORAGE_GB_HOUR)


def test_alarms_functions_and_tables_are_counted_from_the_template() -> None:
    resources = TEMPLATE["Resources"].values()
    alarms = sum(1 for r in resources if r["Type"] == "AWS::CloudWatch::Alarm")
    functions = sum(1 for r in resources if r["Type"] == "AWS::Serverless::Function")
    tables = sum(1 for r in resources if r["Type"] == "AWS::DynamoDB::Table")

    assert line_starting({}, "CloudWatch alarms").item == f"CloudWatch alarms ({alarms})"
    assert line_starting({}, "CloudWatch alarms").dollars == pytest.approx(alarms * 0.10)
    assert line_starting({}, "Lambda").item.startswith(f"Lambda, {functions} functions")
    assert line_starting({}, "DynamoDB").item == f"DynamoDB on-demand ({tables} tables)"


def test_every_service_the_issue_names_has_a_line_with_its_assumption() -> None:
    items = lines_by_item({})
    for prefix in (
        "Fargate Spot",
        "Lambda",
        "DynamoDB",
        "S3",
        "CloudFront",
        "API Gateway HTTP",
        "API Gateway WebSocket",
        "CloudWatch alarms",
        "CloudWatch Logs",
        "SSM SecureStrings",
        "ECR",
    ):
        matching = [line for item, line in items.items() if item.startswith(prefix)]
        assert matching, f"no line for {prefix}"
        assert all(line.assumption for line in matching)


def test_the_printed_total_is_the_sum_of_the_printed_lines() -> None:
    # When the estimate is described
    text = costs.describe({"TaskCpu": "2048", "TaskMemory": "8192"}, "us-east-1")

    # Then the total line is the sum of the lines above it (to the cent, give or take rounding)
    amounts = [float(m) for m in re.findall(r"^  .+?  \$([0-9,.]+)  ", text, flags=re.M)]
    *parts, total = amounts
    assert len(parts) == len(lines_by_item({}))
    assert total == pytest.approx(sum(parts), abs=0.01 * len(parts))
    assert total == pytest.approx(
        sum(line.dollars for line in lines_by_item({"TaskCpu": "2048", "TaskMemory": "8192"}).values()),
        abs=0.005,
    )


def test_the_estimate_says_it_is_rough_dated_and_regional() -> None:
    home = costs.describe({}, "us-east-1")
    away = costs.describe({}, "ap-southeast-2")
    assert "rough" in home and f"list prices of {costs.PRICES_AS_OF}" in home and "region may differ" in home
    assert "ap-southeast-2" in away and "ap-southeast-2" not in home


def test_container_insights_when_enabled_is_flagged_as_left_out() -> None:
    assert "NOT in the total" in line_starting({"ContainerInsights": "enabled"}, "ECS Container").assumption
    assert "disabled" in line_starting({}, "ECS Container").assumption


@pytest.mark.parametrize(("name", "value"), [("TaskCpu", "lots"), ("AgentHoursPerMonth", "-5")])
def test_a_value_that_is_not_a_size_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        costs.describe({name: value}, "us-east-1")


def test_the_command_line_prints_the_estimate_and_refuses_a_bad_argument(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert costs.main(["TaskCpu=512", "TaskMemory=1024"]) == 0
    assert "0.5 vCPU / 1 GB" in capsys.readouterr().out
    assert costs.main(["TaskCpu"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
