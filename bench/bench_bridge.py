"""The bridge's start-up by phase with a restored workspace of 1,000 files / 50 MB, its peak memory beside
OpenClaw's, and OpenClaw's boot with our headless config against its default config (same run).

Goals: the bridge's own start-up time (everything except OpenClaw's boot and handshake) ≤ 1.5 s; bridge
peak RSS ≤ 150 MB. Runs the real bridge process against moto's server and the real pinned OpenClaw
(`make openclaw`). Prints figures; never fails on time.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]
os.environ.update({"LOG_LEVEL": "WARNING", "AWS_DEFAULT_REGION": "us-east-1"})

from bridge.gateway_process import GatewayProcess  # noqa: E402
from bridge.openclaw_config import write_config  # noqa: E402
from bridge.state_sync import StateSync, default_roots  # noqa: E402
from local.offline_model import serve  # noqa: E402
from serverless_openclaw.config import Tables  # noqa: E402
from serverless_openclaw.connections import Connection  # noqa: E402
from serverless_openclaw.lifecycle import Status  # noqa: E402
from serverless_openclaw.messages import IncomingMessage  # noqa: E402
from serverless_openclaw.store.connections import ConnectionStore  # noqa: E402
from serverless_openclaw.store.intake import IntakeStore  # noqa: E402
from serverless_openclaw.store.task_state import TaskStateStore  # noqa: E402
from tests.contract.conftest import gateway_command, require_runtime, start_gateway, wait_for_hello  # noqa: E402
from tests.contract.harness import (  # noqa: E402
    AgentSocket,
    ManagementServer,
    MetadataServer,
    MotoServer,
    bridge_environment,
    start_bridge,
    start_task,
)

USER = "bench-user"
BOOTS = int(os.environ.get("BENCH_BOOTS", "3"))


def _kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def _seed_workspace(moto: MotoServer, files: int, megabytes: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-seed-")) / "home"
    workspace = home / ".openclaw" / "workspace"
    size = megabytes * 1024 * 1024 // files
    for n in range(files):
        path = workspace / f"notes{n % 25:02d}" / f"file{n:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    StateSync(moto.client("s3"), moto.bucket, USER, default_roots(home)).backup()


async def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("benchmark step timed out")


async def bridge_startup(moto: MotoServer, model_url: str, work: Path) -> None:
    tables = Tables.from_env(moto.tables)
    os.environ.update({"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    store = TaskStateStore(tables.task_state)
    task_arn = "arn:aws:ecs:us-east-1:123456789012:task/bench/1"
    start_task(tables, USER, task_arn)
    ConnectionStore(tables.connections).put(Connection("tab", USER, "client", time.time()))
    agent, management, metadata = AgentSocket(), ManagementServer(), MetadataServer(task_arn)
    management.thread.start()
    metadata.thread.start()
    env = bridge_environment(
        moto=moto,
        user_id=USER,
        websocket_url=await agent.start(),
        management_endpoint=management.endpoint,
        metadata_uri=metadata.uri,
        model_url=model_url,
        state_root=work / "task",
    )
    started = time.monotonic()
    process = await start_bridge(env, work / "bridge.log")
    http = f"http://127.0.0.1:{env['BRIDGE_PORT']}"
    await _wait(lambda: store.get(USER).status is Status.RUNNING, 300)
    ready = time.monotonic() - started
    info = await asyncio.to_thread(_get, http + "/status")
    phases: dict[str, float] = info["startup"]
    openclaw = phases.get("gateway", 0) + phases.get("handshake", 0)
    own = sum(phases.values()) - openclaw
    print(f"  bridge start-up with 1,000 files / 50 MB restored (process start → Running {ready:.1f} s):")
    for name, seconds in phases.items():
        print(f"    {name:<12} {seconds:7.3f} s")
    print(f"    bridge's own time {own:.2f} s (goal ≤ 1.5 s); OpenClaw boot + handshake {openclaw:.2f} s")
    print(f"    (python interpreter + imports before the first phase: {ready - sum(phases.values()):.2f} s)")

    for n in range(3):
        IntakeStore(tables).accept(IncomingMessage(USER, f"say 200 words ({n})", "web", "bench"), time.time())
        await agent.send({"type": "nudge"})
        await _wait(lambda n=n: len(management.received("tab", "stream_end")) > n, 180)
    info = await asyncio.to_thread(_get, http + "/status")
    bridge_peak = _kb(process.pid, "VmHWM") / 1024
    gateway_pid = info["gatewayPid"]
    gateway_peak = _kb(gateway_pid, "VmHWM") / 1024
    helpers = sum(_kb(p, "VmRSS") for p in _group_pids(os.getpgid(gateway_pid)) if p != gateway_pid) / 1024
    print("  memory after 3 replies:")
    print(f"    bridge peak RSS        {bridge_peak:7.1f} MB (goal ≤ 150 MB)")
    print(
        f"    OpenClaw peak RSS      {gateway_peak:7.1f} MB (+ {helpers:.0f} MB in its helper processes now)"
    )
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 120)
    await agent.stop()
    management.shutdown()
    metadata.shutdown()


async def openclaw_boot(model_url: str, work: Path) -> None:
    headless, default = [], []
    for n in range(BOOTS):
        gateway = await start_gateway(work / f"headless{n}", model_url)
        headless.append(gateway.boot_seconds)
        await gateway.stop()
        default.append(await _default_boot(work / f"default{n}", model_url))
    print(f"  OpenClaw boot (spawn → hello-ok), median of {BOOTS}:")
    print(
        f"    our headless config    {statistics.median(headless):6.2f} s  {[round(s, 1) for s in headless]}"
    )
    print(f"    default config         {statistics.median(default):6.2f} s  {[round(s, 1) for s in default]}")


async def _default_boot(tmp: Path, model_url: str) -> float:
    """OpenClaw as its docs start it: the minimum config it runs with, no headless switches or env flags."""
    from tests.contract.conftest import free_port

    port, token = free_port(), secrets.token_urlsafe(24)
    home = tmp / "home"
    (home / ".openclaw").mkdir(parents=True)
    write_config(
        home / ".openclaw" / "openclaw.json",
        {
            "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token"}},
            "models": {
                "providers": {
                    "offline": {
                        "baseUrl": model_url,
                        "apiKey": "none",
                        "api": "openai-completions",
                        "models": [{"id": "offline-model", "name": "Offline model"}],
                    }
                }
            },
            "agents": {"defaults": {"model": {"primary": "offline/offline-model"}}},
        },
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "OPENCLAW_HOME": str(home),
        "OPENCLAW_GATEWAY_TOKEN": token,
    }
    process = GatewayProcess(gateway_command(port), env, cwd=home)
    started = time.monotonic()
    await process.start()
    try:
        await wait_for_hello(process, f"ws://127.0.0.1:{port}", token)
        return time.monotonic() - started
    finally:
        await process.stop()


async def main() -> None:
    require_runtime()
    print("bridge (bench/bench_bridge.py)")
    server, thread = serve(0)
    moto = MotoServer()
    moto.start()
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    try:
        _seed_workspace(moto, 1000, 50)
        await bridge_startup(moto, server.url, work)
        await openclaw_boot(server.url, work)
    finally:
        moto.stop()
        server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
