"""What a running agent task costs: the dated list prices of Fargate on ARM and its public address, kept
in one place for the deploy's monthly estimate (scripts/costs.py) and for the figures users see before
they choose (the cost of wake on intent in the settings dialog).

us-east-1 list prices before free tiers, read off AWS's pricing pages at PRICES_AS_OF: other regions
differ, and AWS changes prices; Fargate Spot's price moves with demand.
"""

from __future__ import annotations

from dataclasses import dataclass

PRICES_AS_OF = "2025-06"
"""When the list prices below were read off AWS's pricing pages (us-east-1)."""
FARGATE_ARM_VCPU_HOUR = 0.03238
"""Fargate, Linux/ARM (the task definition is ARM64), per vCPU-hour, on-demand."""
FARGATE_ARM_GB_HOUR = 0.00356
"""Fargate, Linux/ARM, per GB of memory per hour, on-demand."""
FARGATE_SPOT_DISCOUNT = 0.70
"""Fargate Spot's price moves with demand; about 70% below on-demand is what it has mostly been."""
PUBLIC_IPV4_HOUR = 0.005
"""Every public IPv4 address, per hour: the task has one (public subnet, no NAT gateway)."""


def on_demand_hour(cpu_units: int, memory_mib: int) -> float:
    """USD per hour of one ARM task of this size on on-demand Fargate (compute only)."""
    return cpu_units / 1024 * FARGATE_ARM_VCPU_HOUR + memory_mib / 1024 * FARGATE_ARM_GB_HOUR


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
    compute = on_demand_hour(cpu_units, memory_mib) * hours
    address = PUBLIC_IPV4_HOUR * hours
    return RunningCost(
        minutes=minutes, spot=compute * (1 - FARGATE_SPOT_DISCOUNT) + address, on_demand=compute + address
    )
