"""What the bridge drives, as protocols: the OpenClaw gateway process, the connection to it, the agent link
to the control plane and the state sync. `wiring.production_bridge` wires the real ones (GatewayProcess,
GatewayClient, AgentLink, StateSync); tests give fakes of the same shape."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from bridge.agent_loop import Runner
from bridge.state_sync import BackupReport, RestoreReport


class Gateway(Protocol):
    """The OpenClaw gateway child process (GatewayProcess), as far as the bridge drives it."""

    @property
    def running(self) -> bool:
        """Whether the child is alive right now."""
        ...

    @property
    def pid(self) -> int | None:
        """The current child's PID."""
        ...

    @property
    def restarts(self) -> int:
        """How many times the child was restarted after an unexpected exit."""
        ...

    async def start(self) -> None:
        """Start the child and its supervisor."""
        ...

    async def wait_until_ready(self, port: int, timeout: float) -> None:
        """Return once the child's readiness endpoint on `port` says it is ready."""
        ...

    async def stop(self, timeout: float = 15) -> int | None:
        """Stop the child; its exit status."""
        ...


class GatewayConnection(Runner, Protocol):
    """The bridge's operator connection to the gateway (GatewayClient): runs, aborts, requests, liveness."""

    async def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Call a gateway method; its payload."""
        ...

    @property
    def connected(self) -> bool:
        """True while the handshaken connection is open."""
        ...

    async def start(self) -> None:
        """Connect and handshake."""
        ...

    async def close(self) -> None:
        """Close for good."""
        ...


class Link(Protocol):
    """The dial-out connection to the control plane (AgentLink)."""

    @property
    def connected(self) -> bool:
        """Whether the link is open right now."""
        ...

    async def start(self) -> None:
        """Start dialing in the background."""
        ...

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the link; False if it is not up."""
        ...

    async def close(self) -> None:
        """Stop reconnecting and close."""
        ...


class Sync(Protocol):
    """OpenClaw's files against their copy in S3 (StateSync)."""

    def restore(self, only: Collection[str] | None = None, /) -> RestoreReport:
        """Bring the roots (all, or those named) down from S3."""
        ...

    def backup(self) -> BackupReport:
        """Upload what changed since the last backup."""
        ...
