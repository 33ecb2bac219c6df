"""What the bridge tells ECS's health check (`/health`) and operators (`/status`) about itself."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.app import Bridge


def health(bridge: Bridge) -> tuple[bool, str]:
    """(healthy, reason): OpenClaw and the agent connection must both be up."""
    if bridge.failure:
        return False, f"start failed: {bridge.failure}"
    if bridge.stopping:
        return False, "stopping"
    if not bridge.ready:
        return False, f"starting ({bridge.phases.current})"
    gateway, client = bridge.gateway, bridge.gateway_client
    if not (gateway and gateway.running and client and client.connected):
        return bridge.restarts.health()
    if not (bridge.link and bridge.link.connected):
        return False, "agent connection down"
    return True, "ok"


def phase(bridge: Bridge) -> str:
    """Where the bridge is: a start-up phase, ready, restarting OpenClaw, or stopping."""
    if bridge.stopping:
        return "stopping"
    if not bridge.ready:
        return bridge.phases.current
    return "restarting" if bridge.restarts.restarting else "ready"


def status(bridge: Bridge) -> dict[str, Any]:
    """What the bridge is doing, for operators."""
    loop, gateway = bridge.loop, bridge.gateway
    current = loop.current if loop else None
    return {
        "phase": phase(bridge),
        "uptimeSeconds": round(time.monotonic() - bridge.phases.started, 1),
        "taskArn": bridge.task_arn,
        "failure": bridge.failure,
        "startup": bridge.phases.durations,
        "rehearsal": bridge.rehearsal.outcome if bridge.rehearsal else "not begun",
        "currentRun": (
            {
                "messageId": current.item.message_id,
                "conversationId": current.item.conversation_id,
                "seconds": round(bridge.clock() - current.started_at, 1),
            }
            if current
            else None
        ),
        "answered": loop.answered if loop else 0,
        "failed": loop.failed if loop else 0,
        "gatewayPid": gateway.pid if gateway else None,
        "gatewayRestarts": gateway.restarts if gateway else 0,
        "gatewayRestartSeconds": bridge.restarts.durations,
        "lastBackup": bridge.backups.last,
    }
