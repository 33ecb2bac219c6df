"""What the person running `make dev` sees: short timestamped lines, the banner, and nothing else.

Everything else the stack's process prints (the functions' logs and metrics, tracebacks, moto) goes to
`.local/logs/stack.log`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any


class Console:
    """Short timestamped lines on the real stdout."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def __call__(self, text: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        for line in text.splitlines() or [""]:
            self.stream.write(f"{stamp}  {line}\n")
        self.stream.flush()

    def block(self, text: str) -> None:
        """Print a block as is (the banner)."""
        self.stream.write(text + "\n")
        self.stream.flush()


def banner(endpoints: Mapping[str, Any], model: str, state_dir: Path) -> str:
    """The one block a person needs after `make dev`: where the web chat is, the login, the model, the
    other endpoints and where the state and logs are."""
    try:
        state = state_dir.relative_to(Path.cwd())
    except ValueError:
        state = state_dir
    lines = [
        "",
        "  serverless-openclaw is running on this machine (no AWS account involved)",
        "",
        f"  web chat   {endpoints['webUrl']}",
        f"  login      {endpoints['username']}   password: {endpoints['password']}",
        f"  model      {model}",
        "",
        f"  WebSocket API  {endpoints['webSocketUrl']}      HTTP API  {endpoints['httpApiUrl']}",
        f"  AWS (moto)     {endpoints['awsEndpoint']}       ECS       {endpoints['ecsEndpoint']}",
        f"  Telegram       {endpoints['telegramUrl']}  (a stand-in Telegram: write to the bot as any user)",
        f"  state {state}/  ·  logs {state}/logs/  ·  endpoints {state}/endpoints.json",
        "",
        "  Ctrl-C stops the agents (after their final backup) and keeps everything for next time;",
        "  `make dev-reset` wipes it.",
        "",
    ]
    return "\n".join(lines)


def configure_logging(logs_dir: Path) -> IO[str]:
    """Send everything that is not the console (functions' logs, tracebacks, moto) to a log file."""
    logs_dir.mkdir(parents=True, exist_ok=True)
    stream = (logs_dir / "stack.log").open("a", buffering=1, encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # uvicorn logs every WebSocket upgrade with its query string, which carries the user's ID token.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    return stream
