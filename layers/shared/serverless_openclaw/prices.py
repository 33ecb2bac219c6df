"""The one table of AWS list prices the stack quotes: `scripts/costs.py` (the monthly estimate `make deploy`
prints) and the warm-window cost shown in the web chat's settings both read it, so a price is changed here
and nowhere else (docs/decisions.md).

Source: AWS's public pricing pages for us-east-1, read on PRICES_AS_OF —
https://aws.amazon.com/fargate/pricing/ (Linux/ARM, on-demand and Spot),
https://aws.amazon.com/vpc/pricing/ (public IPv4), https://aws.amazon.com/lambda/pricing/,
https://aws.amazon.com/dynamodb/pricing/on-demand/, https://aws.amazon.com/s3/pricing/,
https://aws.amazon.com/cloudfront/pricing/, https://aws.amazon.com/api-gateway/pricing/,
https://aws.amazon.com/cloudwatch/pricing/, https://aws.amazon.com/ecr/pricing/,
https://aws.amazon.com/cognito/pricing/. Other regions differ, and AWS changes prices.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_SOURCE = "AWS list prices for us-east-1 (aws.amazon.com/fargate/pricing, aws.amazon.com/vpc/pricing)"
"""What the web chat names as the origin of the prices it quotes."""
PRICES_AS_OF = "2025-06"
"""When the list prices below were read off AWS's pricing pages (us-east-1)."""

# --------------------------------------------------------------------------------------------------------
# us-east-1 list prices (USD) as of PRICES_AS_OF
# --------------------------------------------------------------------------------------------------------
FARGATE_ARM_VCPU_HOUR = 0.03238
"""Fargate, Linux/ARM (the task definition is ARM64), per vCPU-hour, on-demand."""
FARGATE_ARM_GB_HOUR = 0.00356
"""Fargate, Linux/ARM, per GB of memory per hour, on-demand."""
FARGATE_SPOT_DISCOUNT = 0.70
"""Fargate Spot's price moves with demand; about 70% below on-demand is what it has mostly been."""
FARGATE_STORAGE_GB_HOUR = 0.000111
"""Ephemeral storage above the 20 GB every task gets free, per GB-hour."""
FARGATE_FREE_STORAGE_GB = 20
PUBLIC_IPV4_HOUR = 0.005
"""Every public IPv4 address, per hour: the task has one (public subnet, no NAT gateway)."""
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


def fargate_on_demand_hour(vcpu: float, memory_gb: float) -> float:
    """Dollars an hour for one Linux/ARM on-demand Fargate task of this size (compute only)."""
    return vcpu * FARGATE_ARM_VCPU_HOUR + memory_gb * FARGATE_ARM_GB_HOUR


def fargate_spot_hour(vcpu: float, memory_gb: float) -> float:
    """Dollars an hour for one Linux/ARM Fargate Spot task of this size (at the usual Spot discount)."""
    return fargate_on_demand_hour(vcpu, memory_gb) * (1 - FARGATE_SPOT_DISCOUNT)


@dataclass(frozen=True, slots=True)
class RunningCost:
    """What keeping the agent task up for `minutes` costs, on Spot (the usual) and on-demand (the
    fallback when Spot has no capacity), its public address included; list prices of `prices_as_of`."""

    minutes: float
    spot: float
    on_demand: float
    prices_as_of: str = PRICES_AS_OF

    def as_json(self) -> dict[str, object]:
        """The shape the HTTP API returns (dollars rounded to a hundredth of a cent)."""
        return {
            "minutes": self.minutes,
            "spotUsd": round(self.spot, 4),
            "onDemandUsd": round(self.on_demand, 4),
            "pricesAsOf": self.prices_as_of,
        }


def running_cost(cpu_units: int, memory_mib: int, minutes: float) -> RunningCost:
    """What `minutes` of one agent task of this size cost (compute and its public IPv4 address)."""
    hours = minutes / 60
    vcpu, memory_gb = cpu_units / 1024, memory_mib / 1024
    address = PUBLIC_IPV4_HOUR * hours
    return RunningCost(
        minutes=minutes,
        spot=fargate_spot_hour(vcpu, memory_gb) * hours + address,
        on_demand=fargate_on_demand_hour(vcpu, memory_gb) * hours + address,
    )
