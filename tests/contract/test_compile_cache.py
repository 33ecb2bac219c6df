"""The compile cache prepared at image-build time, with the real gateway: used when present, and a damaged
one only costs time (Node rejects its entries, compiles the modules, and the gateway boots as before). The
second boot runs on the home the first one left, as a returning user's restored state: OpenClaw skips the
state migrations it already ran there, though the token is a fresh one."""

from __future__ import annotations

import io
import json
import os
import secrets
import uuid
from pathlib import Path

import pytest
from aws_lambda_powertools import Logger

from bridge import compile_cache
from bridge.gateway_process import GatewayProcess
from bridge.openclaw_config import ModelChoice, build_config, gateway_environment, write_config
from local.offline_model import OfflineModelServer
from tests.contract.conftest import BOOT_TIMEOUT, ENTRY, NODE, free_port, gateway_command, wait_for_hello

pytestmark = pytest.mark.contract


class NodeReport:
    """The gateway's output, where Node (NODE_DEBUG_NATIVE=COMPILE_CACHE) tells each cache lookup."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.logger = Logger(service=f"contract-{uuid.uuid4().hex}", level="INFO", stream=self.stream)

    def lines(self, fragment: str) -> list[str]:
        """Output lines containing fragment."""
        records = (json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip())
        return [r["line"] for r in records if r.get("message") == "gateway output" and fragment in r["line"]]


async def boot_with(home: Path, tmp_dir: Path, prepared: Path, model_url: str, port: int) -> NodeReport:
    """Seed the gateway's TMPDIR from `prepared` as the bridge does, boot it in `home` with a fresh token to
    hello-ok, stop it. Its output holds Node's cache lookups and OpenClaw's own startup phases."""
    workspace = home / ".openclaw" / "workspace"
    workspace.mkdir(parents=True, exist_ok=True)
    compile_cache.seed(prepared, tmp_dir)
    choice = ModelChoice("offline", "offline-model", base_url=model_url)
    write_config(
        home / ".openclaw" / "openclaw.json",
        build_config(choice, port=port, workspace=workspace, log_file=home / "openclaw.log"),
    )
    token = secrets.token_urlsafe(32)
    env = gateway_environment(
        os.environ, home=home, cache_dir=home / "cache", tmp_dir=tmp_dir, token=token, secrets={}
    )
    env["NODE_DEBUG_NATIVE"] = "COMPILE_CACHE"
    env["OPENCLAW_GATEWAY_STARTUP_TRACE"] = "1"
    report = NodeReport()
    process = GatewayProcess(gateway_command(port), env, cwd=home, log=report.logger)
    await process.start()
    try:
        await process.wait_until_ready(port, timeout=BOOT_TIMEOUT)
        await wait_for_hello(process, f"ws://127.0.0.1:{port}", token)
    finally:
        await process.stop()
    return report


@pytest.mark.timeout(1200)  # a preparation and two boots, each minutes long on a loaded machine
async def test_a_prepared_cache_is_used_and_a_damaged_one_only_costs_time(
    tmp_path: Path, offline_model: OfflineModelServer
) -> None:
    # Given a compile cache prepared as the image build prepares it (one boot of the gateway)
    prepared = tmp_path / "compile-cache"
    await compile_cache.prepare(str(NODE), str(ENTRY), prepared, say=lambda line: None)

    # When a gateway boots with it in a new home
    home, port = tmp_path / "home", free_port()
    used = await boot_with(home, tmp_path / "prepared-tmp", prepared, offline_model.url, port)

    # Then Node took OpenClaw's modules from it instead of compiling them, in its worker threads too
    accepted = [line for line in used.lines("was accepted") if "/openclaw/dist/" in line]
    assert len(accepted) > 100, used.lines("[compile cache]")[:20]
    assert [line for line in accepted if ".worker" in line or "/worker/" in line], accepted[:20]

    # When every entry of the prepared cache is damaged (overwritten with garbage of the same size)
    for entry in prepared.rglob("*"):
        if entry.is_file():
            entry.write_bytes(os.urandom(entry.stat().st_size))
    # and the gateway boots again on the home the first boot left (a returning user's restored state), with
    # the same config and a fresh token, as the next task writes them
    damaged = await boot_with(home, tmp_path / "damaged-tmp", prepared, offline_model.url, port)

    # Then the gateway still boots to hello-ok: Node read the damaged entries, rejected every one of them
    # and compiled those modules (what it accepts later are the entries this boot wrote afresh)
    rejected = damaged.lines("magic number mismatch")
    assert len(rejected) > 100, damaged.lines("[compile cache]")[:20]
    # and OpenClaw ran its state migrations on the new home only: on the restored one its checkpoint (a
    # fingerprint of the resolved config) still matched, so it skipped them
    assert used.lines("cli.bootstrap.legacy-state-migrations"), used.lines("startup trace")[:40]
    assert damaged.lines("startup trace: cli.bootstrap.") and not damaged.lines("legacy-state-migrations")
