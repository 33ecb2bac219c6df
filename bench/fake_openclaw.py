"""`python bench/fake_openclaw.py gateway run --port N --bind loopback`: an instant protocol-v4 gateway.

The bridge runs it exactly as it runs OpenClaw (`OPENCLAW_NODE OPENCLAW_ENTRY gateway run --port …`, the
token in OPENCLAW_GATEWAY_TOKEN). Its runs stream "Echo: <message>" at once, so a reply through the local
stack with it takes only what our own pipeline takes. Used by bench_local_stack.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

from tests.bridge.fake_gateway import FakeGateway  # noqa: E402


async def serve(port: int) -> None:
    """Serve until SIGTERM/SIGINT."""
    gateway = await FakeGateway(os.environ["OPENCLAW_GATEWAY_TOKEN"]).start(port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"[gateway] ready (fake, port {gateway.port})", flush=True)
    await stop.wait()
    await gateway.stop()


def main() -> int:
    """Parse the arguments OpenClaw's `gateway run` takes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["gateway"])
    parser.add_argument("action", choices=["run"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="loopback")
    args = parser.parse_args()
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
