"""`python -m bridge`: the container's entry point (uvicorn on loopback; the task has no ingress)."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn

from bridge.config import BridgeConfig
from bridge.endpoints import create_app
from bridge.wiring import production_bridge
from serverless_openclaw.config import ConfigError


class _Server(uvicorn.Server):
    """uvicorn, except that a graceful stop ends the process with 0 instead of re-raising SIGTERM."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals once it has shut down, which would make every clean ECS
        # stop look like "killed by SIGTERM" (exit 143) in the STOPPED event.
        self._captured_signals.clear()


def main() -> int:
    """Build the configuration (fail fast), then serve until SIGTERM/SIGINT; exit 0 after a clean stop."""
    try:
        cfg = BridgeConfig.from_env()
    except ConfigError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: ECS reports the exit code in the STOPPED event
    bridge = production_bridge(cfg)
    server = _Server(
        uvicorn.Config(
            create_app(bridge),
            host="127.0.0.1",
            port=cfg.http_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    server.run()
    # A bridge that could not start exits non-zero, so its STOPPED event carries the failure.
    return 1 if bridge.failure else 0


if __name__ == "__main__":
    sys.exit(main())
