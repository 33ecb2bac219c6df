"""Node's compile cache of the OpenClaw gateway: prepared once where OpenClaw is installed, seeded per boot.

OpenClaw turns Node's module compile cache on by itself, under `$TMPDIR/node-compile-cache/…`, but only
for its main thread (its worker threads and helper processes compile everything every time), and a task
starts with an empty temporary folder, so every boot on Fargate compiled OpenClaw's thousands of modules
afresh (on a developer machine the cache in /tmp stayed warm, which is why measuring there showed little).
The gateway now gets NODE_COMPILE_CACHE in its own TMPDIR (openclaw_config.gateway_environment), which
serves every thread and helper. The image build and `make openclaw` boot the gateway once and keep the
cache it wrote (`python -m bridge.compile_cache DIR`); the bridge copies it in before each boot. A missing
or damaged cache only costs time: Node checks every entry against the module's source and its own V8
version and compiles whatever it rejects.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from aws_lambda_powertools import Logger

from bridge.gateway_process import GatewayProcess
from bridge.openclaw_client import GatewayClient
from bridge.openclaw_config import (
    COMPILE_CACHE_FOLDER,
    ModelChoice,
    build_config,
    gateway_command,
    gateway_environment,
    write_config,
)
from bridge.stand_in_model import StandInModel
from serverless_openclaw.observability import logger as default_logger

CACHE_FOLDER: Final = COMPILE_CACHE_FOLDER
"""The folder under the gateway's TMPDIR where Node keeps the compile cache."""
PREPARED_FOLDER: Final = "compile-cache"
_PREPARE_TIMEOUT: Final = 600.0
_SESSION: Final = "agent:main:compile-cache"


def prepared_dir(entry: str | Path) -> Path:
    """Where the prepared cache of the OpenClaw at `entry` lives: `<root>/compile-cache` beside node_modules.

    `<root>/node_modules/openclaw/openclaw.mjs` → `<root>/compile-cache` (/opt/openclaw in the image,
    .cache/openclaw for `make openclaw`).
    """
    return Path(entry).resolve().parent.parent.parent / PREPARED_FOLDER


def seed(prepared: Path, tmp_dir: Path, *, log: Logger | None = None) -> bool:
    """Copy the prepared cache into `tmp_dir` (the gateway's TMPDIR); False, and a log line, when it is not.

    Never raises for a missing or unreadable cache: the gateway then compiles everything, as before.
    """
    log = log or default_logger
    target = tmp_dir / CACHE_FOLDER
    if target.is_dir():
        return True  # a restart of the gateway in the same task: its own cache is already there
    if not _holds_entries(prepared):
        log.info(
            "no prepared compile cache; OpenClaw compiles its modules at this boot", prepared=str(prepared)
        )
        return False
    started = time.monotonic()
    staging = tmp_dir / f".{CACHE_FOLDER}.{secrets.token_hex(4)}"
    try:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(prepared, staging, symlinks=False)
        staging.rename(target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("prepared compile cache not usable; OpenClaw compiles its modules", error=str(error))
        return False
    log.info("compile cache seeded", seconds=round(time.monotonic() - started, 3))
    return True


async def prepare(node: str, entry: str, destination: Path, *, say: Callable[[str], None] = print) -> None:
    """Boot the gateway once with our config in a scratch home, answer one message, keep the cache it wrote.

    The message (answered by a stand-in model on loopback, so nothing leaves the machine) makes the cache
    hold what a conversation's first turn compiles too: the worker threads and modules OpenClaw loads only
    then. The destination is replaced whole, and only once all this succeeded: a failed preparation leaves
    the previous cache (or none) in place.
    """
    with tempfile.TemporaryDirectory(prefix="openclaw-compile-cache-") as scratch, StandInModel() as model:
        root = Path(scratch)
        home, tmp_dir = root / "home", root / "tmp"
        workspace = home / ".openclaw" / "workspace"
        for folder in (workspace, tmp_dir, root / "cache"):
            folder.mkdir(parents=True)
        port = _free_port()
        choice = ModelChoice("offline", "offline-model", base_url=model.url)
        write_config(
            home / ".openclaw" / "openclaw.json",
            build_config(choice, port=port, workspace=workspace, log_file=root / "openclaw.log"),
        )
        token = secrets.token_urlsafe(32)
        env = gateway_environment(
            os.environ, home=home, cache_dir=root / "cache", tmp_dir=tmp_dir, token=token, secrets={}
        )
        say(f"==> preparing OpenClaw's compile cache (one boot, one message on loopback) into {destination}")
        started = time.monotonic()
        gateway = GatewayProcess(gateway_command(node, entry, port), env, cwd=home, log=_quiet_logger())
        await gateway.start()
        try:
            await gateway.wait_until_ready(port, timeout=_PREPARE_TIMEOUT)
            await _first_turn(f"ws://127.0.0.1:{port}", token)
        finally:
            # Node writes the cache when the gateway exits, which it does cleanly on SIGTERM.
            code = await gateway.stop(timeout=60)
        cache = tmp_dir / CACHE_FOLDER
        if not _holds_entries(cache):
            raise RuntimeError(f"the gateway exited ({code}) without writing a compile cache in {cache}")
        _replace(cache, destination)
        say(f"==> compile cache ready ({_megabytes(destination)} MB, {time.monotonic() - started:.0f} s)")


async def _first_turn(url: str, token: str) -> None:
    """One message in a session of its own, answered by the stand-in model."""
    client = GatewayClient(url, token, run_timeout=_PREPARE_TIMEOUT)
    await client.start()
    try:
        result = await client.run(_SESSION, "hello", idempotency_key=secrets.token_hex(16))
    finally:
        await client.close()
    if result.state != "final":
        raise RuntimeError(f"the preparation's message ended {result.state}: {result.error_message}")


def _holds_entries(cache: Path) -> bool:
    """Whether `cache` is a folder Node wrote entries into (one sub-folder per Node release and flags)."""
    try:
        return any(child.is_dir() for child in cache.iterdir())
    except OSError:
        return False


def _replace(source: Path, destination: Path) -> None:
    """Put `source` at `destination`, replacing what was there, never leaving a half-copied folder."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}.{secrets.token_hex(4)}"
    shutil.copytree(source, staging)
    # Node writes its entries owner-only; the image prepares them as root for a bridge running as another
    # user. They hold nothing but compiled code of a public package.
    for path in (staging, *staging.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    old = destination.parent / f".{destination.name}.old.{secrets.token_hex(4)}"
    if destination.exists():
        destination.rename(old)
    staging.rename(destination)
    shutil.rmtree(old, ignore_errors=True)


def _megabytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) // 1_000_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quiet_logger() -> Logger:
    """The gateway's output matters only when the preparation fails, and then its error says why."""
    return Logger(service="compile-cache", level="WARNING")


def main(argv: list[str] | None = None) -> int:
    """`python -m bridge.compile_cache [DIR]`: prepare the cache for $OPENCLAW_NODE / $OPENCLAW_ENTRY."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("destination", nargs="?", type=Path, help="default: <OpenClaw root>/compile-cache")
    parser.add_argument("--node", default=os.environ.get("OPENCLAW_NODE", "node"))
    parser.add_argument(
        "--entry",
        default=os.environ.get("OPENCLAW_ENTRY", "/opt/openclaw/node_modules/openclaw/openclaw.mjs"),
    )
    args = parser.parse_args(argv)
    # The gateway runs in a scratch home: relative paths would no longer point where they were meant to.
    node = str(Path(args.node).resolve()) if os.sep in args.node else args.node
    entry = str(Path(args.entry).resolve())
    destination = args.destination or prepared_dir(entry)
    try:
        asyncio.run(prepare(node, entry, destination))
    except (OSError, RuntimeError, TimeoutError) as error:
        print(f"error: the compile cache could not be prepared: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
