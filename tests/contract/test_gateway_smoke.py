"""The real pinned OpenClaw gateway, run with our headless config, our environment and our supervisor.

A raw `websockets` client (no Origin header) speaks protocol v4 to it, with the offline model behind it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from ulid import ULID
from websockets.asyncio.client import ClientConnection

from bridge.openclaw_session import session_key_for
from local.offline_model import OfflineModelServer
from tests.contract.conftest import (
    FatalHandshake,
    RunningGateway,
    chat,
    open_operator,
    request,
    start_gateway,
    wait_for_hello,
)

pytestmark = pytest.mark.contract


def session_key() -> str:
    # What the bridge routes on for a real conversation id (an upper-case ULID from ws_message): the
    # gateway's events must come back under exactly this key.
    return session_key_for(str(ULID()))


def live_members(pgid: int) -> list[int]:
    """PIDs of live (not zombie) processes in a process group."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def test_handshake_as_backend_client_gets_hello_ok(gateway: RunningGateway) -> None:
    # Given the gateway booted with our headless config
    print(
        f"\nOpenClaw boot with our headless config: {gateway.boot_seconds:.1f} s from spawn to first hello-ok"
    )

    # When a gateway-client/backend connects over loopback with the token
    ws, hello = await open_operator(gateway.url, gateway.token)
    await ws.close()

    # Then it is accepted on protocol v4 with the scopes it asked for
    assert hello["type"] == "hello-ok"
    assert hello["protocol"] == 4
    assert set(hello["auth"]["scopes"]) >= {"operator.read", "operator.write"}
    assert "chat.send" in hello["features"]["methods"]


async def test_wrong_token_is_refused(gateway: RunningGateway) -> None:
    # Given / When a client presents the wrong token
    with pytest.raises(FatalHandshake) as refused:
        await open_operator(gateway.url, "not-the-token")

    # Then the gateway says exactly why
    assert refused.value.error["details"]["code"] == "AUTH_TOKEN_MISMATCH"


async def test_a_browser_origin_is_refused(gateway: RunningGateway) -> None:
    # Given / When a backend client that (wrongly) sends a browser Origin header
    with pytest.raises(FatalHandshake) as refused:
        await open_operator(gateway.url, gateway.token, origin="http://example.com")

    # Then it is refused, which is why the bridge must never forward one
    assert refused.value.error["details"]["code"] == "CONTROL_UI_ORIGIN_NOT_ALLOWED"


async def test_chat_send_streams_deltas_then_the_offline_models_final_answer(gateway: RunningGateway) -> None:
    # Given a connected client
    ws, _ = await open_operator(gateway.url, gateway.token)

    # When a message is sent
    try:
        run = await chat(ws, session_key(), "hello contract")
    finally:
        await ws.close()

    # Then deltas streamed and the final text is the offline model's answer, matching what streamed
    expected = (
        "(offline model) No API key is configured, so this is the offline model. You said: hello contract"
    )
    assert run.state == "final"
    assert run.deltas, "no chat deltas streamed"
    assert run.text == expected
    assert run.streamed == expected


async def test_tool_call_writes_the_file_into_our_workspace_and_reads_it_back(
    gateway: RunningGateway,
) -> None:
    # Given a client that asked for tool events
    ws, _ = await open_operator(gateway.url, gateway.token, caps=["tool-events"])
    key = session_key()

    try:
        # When the offline model is asked to create a file
        created = await chat(ws, key, "create file test.md with the text hello contract")
        # and then to show it
        shown = await chat(ws, key, "show test.md")
    finally:
        await ws.close()

    # Then the write tool ran, reported as agent tool events, and the file is in the configured workspace
    starts = [e for e in created.tool_events("write") if e["data"]["phase"] == "start"]
    results = [e for e in created.tool_events("write") if e["data"]["phase"] == "result"]
    assert starts and starts[0]["data"]["args"] == {"path": "test.md", "content": "hello contract"}
    assert results and results[0]["data"]["isError"] is False
    assert created.text == "(offline model) Created test.md."
    assert (gateway.workspace / "test.md").read_text() == "hello contract"
    # and reading it back quotes its content
    assert shown.tool_events("read")
    assert "hello contract" in shown.text


async def test_the_agent_reads_files_placed_in_the_workspace(gateway: RunningGateway) -> None:
    # Given a file put into the workspace from outside (as a restore from S3 does)
    name = f"restored-{uuid.uuid4().hex[:6]}.md"
    (gateway.workspace / name).write_text("restored from the bucket\n")
    ws, _ = await open_operator(gateway.url, gateway.token)

    # When the agent is asked to show it and to list the files
    try:
        shown = await chat(ws, session_key(), f"show {name}")
        listed = await chat(ws, session_key(), "list the files")
    finally:
        await ws.close()

    # Then
    assert "restored from the bucket" in shown.text
    assert name in listed.text


async def test_headless_switches_took_effect(gateway: RunningGateway) -> None:
    # Given the running gateway
    # When its HTTP side and its home are inspected
    async with httpx.AsyncClient() as http:
        control_ui = await http.get(f"http://127.0.0.1:{gateway.port}/")

    # Then there is no Control UI, no bootstrap ritual in the workspace, our config was kept as written,
    # and the gateway token sits in no file under its home
    assert control_ui.status_code == 404
    assert not {"BOOTSTRAP.md", "SOUL.md", "IDENTITY.md"} & {p.name for p in gateway.workspace.iterdir()}
    config = json.loads((gateway.state_dir / "openclaw.json").read_text())
    assert config["gateway"]["auth"] == {"mode": "token"}  # the token comes from its environment only
    token = gateway.token.encode()
    leaks = [str(path) for path in gateway.home.rglob("*") if path.is_file() and token in path.read_bytes()]
    assert leaks == []


async def test_a_killed_gateway_is_restarted_and_stop_leaves_no_orphans(
    offline_model: OfflineModelServer, tmp_path: Path
) -> None:
    # Given a second gateway of our own, supervised with a short backoff
    running = await start_gateway(tmp_path, offline_model.url, backoff_initial=0.2)
    first_pid = running.process.pid
    assert first_pid is not None
    generations = {first_pid}
    try:
        # When it is killed outright (an OOM kill, say)
        os.kill(first_pid, signal.SIGKILL)
        hello = await wait_for_hello(running.process, running.url, running.token, allow_restarts=True)
        assert running.process.pid is not None
        generations.add(running.process.pid)

        # Then the supervisor restarted it and it answers again
        assert hello["type"] == "hello-ok"
        assert running.process.restarts == 1
        assert running.process.pid != first_pid
        ws, _ = await open_operator(running.url, running.token)
        try:
            run = await chat(ws, session_key(), "are you back?")
        finally:
            await ws.close()
        assert run.text.endswith("You said: are you back?")
    finally:
        # And when it is stopped it exits cleanly, and neither generation leaves a helper process behind
        code = await running.stop()
    assert code == 0
    assert {pgid: live_members(pgid) for pgid in generations} == {pgid: [] for pgid in generations}


async def test_a_slow_count_streams_and_can_be_aborted(gateway: RunningGateway) -> None:
    # Given a client and a session
    ws, _ = await open_operator(gateway.url, gateway.token)
    key = session_key()
    try:
        # When a short slow count runs to the end
        counted = await chat(ws, key, "slowly count to 5")
        # and a long one is aborted once it has started streaming
        run_id = str(uuid.uuid4())
        params = {"sessionKey": key, "message": "slowly count to 500", "idempotencyKey": run_id}
        await request(ws, "chat.send", params)
        aborted = await events_until_aborted(ws, key, run_id)
    finally:
        await ws.close()

    # Then the first gave every number, and the second ended as aborted with what had streamed so far
    assert counted.text == "(offline model) 1 2 3 4 5"
    assert counted.streamed == counted.text
    assert aborted["state"] == "aborted"
    partial = "".join(p.get("text", "") for p in (aborted.get("message") or {}).get("content") or [])
    assert partial.startswith("(offline model) 1") and not partial.endswith(" 500")


async def events_until_aborted(ws: ClientConnection, key: str, run_id: str) -> dict[str, Any]:
    """Abort the run once its first number streamed; return its terminal chat event."""
    abort_sent = False
    async with asyncio.timeout(120):
        while True:
            frame = json.loads(await ws.recv())
            payload = frame.get("payload") or {}
            if frame.get("event") != "chat" or payload.get("runId") != run_id:
                continue
            if (
                payload.get("state") == "delta"
                and not abort_sent
                and " 1" in payload["message"]["content"][0]["text"]
            ):
                await request(ws, "chat.abort", {"sessionKey": key, "runId": run_id})
                abort_sent = True
            if payload.get("state") in ("final", "error", "aborted"):
                return dict(payload)
