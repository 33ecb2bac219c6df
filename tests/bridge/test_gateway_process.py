"""GatewayProcess with tiny fake children: output reaches the logs, restarts back off, stop escalates."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Logger

from bridge.gateway_process import GatewayProcess

TOKEN = "gw-token-0123456789abcdef"
WAIT = 30.0  # generous: these only bound a hang, they are never what a test asserts


class LogCapture:
    """A Powertools Logger writing JSON lines to memory, with the records parsed back."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.logger = Logger(service=f"test-{uuid.uuid4().hex}", level="DEBUG", stream=self.stream)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]

    def lines(self, stream: str = "stdout") -> list[str]:
        return [
            r["line"] for r in self.records if r.get("message") == "gateway output" and r["stream"] == stream
        ]

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("message") == message]


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until condition() holds; fail (not flake) only if it never does within a generous bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.01)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    """Whether pid is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def gateway(
    code: str, capture: LogCapture, tmp_path: Path, env: dict[str, str] | None = None, **kwargs: Any
) -> GatewayProcess:
    base = {"PATH": os.environ.get("PATH", ""), "OPENCLAW_GATEWAY_TOKEN": TOKEN, **(env or {})}
    return GatewayProcess(python(code), base, cwd=tmp_path, log=capture.logger, **kwargs)


SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_accepts(port: int) -> bool:
    """Whether something accepts a TCP connection on the loopback port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def readiness_server(port: int, ready_after: float) -> str:
    """A child that listens at once but answers /readyz 503 (as the gateway does) until ready_after s."""
    return (
        "import http.server, json, time\n"
        "started = time.monotonic()\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def log_message(self, *args): pass\n"
        "    def do_GET(self):\n"
        f"        ready = time.monotonic() - started >= {ready_after}\n"
        "        body = json.dumps({'ready': ready, 'failing': [] if ready else ['startup-sidecars']})\n"
        "        self.send_response(200 if ready else 503); self.end_headers()\n"
        "        self.wfile.write(body.encode())\n"
        "http.server.HTTPServer.allow_reuse_address = True\n"
        f"server = http.server.HTTPServer(('127.0.0.1', {port}), H)\n"
        "print('listening', flush=True)\n"
        "server.serve_forever()\n"
    )


async def test_output_lines_reach_the_logger_without_secrets(tmp_path: Path) -> None:
    # Given a child that prints to stdout and stderr, including the gateway token and an API key
    capture = LogCapture()
    code = (
        "import os, sys, time\n"
        "print('hello from the gateway', flush=True)\n"
        "print('token is ' + os.environ['OPENCLAW_GATEWAY_TOKEN'], flush=True)\n"
        "print('key ' + os.environ['ANTHROPIC_API_KEY'], flush=True)\n"
        "print('Authorization: Bearer abcdefghijklmnop', flush=True)\n"
        "print('\\x1b[32mgreen\\x1b[0m', flush=True)\n"
        "print('a warning', file=sys.stderr, flush=True)\n"
        "time.sleep(120)\n"
    )
    process = gateway(code, capture, tmp_path, env={"ANTHROPIC_API_KEY": "sk-ant-api03-secretvalue"})

    # When it runs
    await process.start()
    try:
        await eventually(lambda: "a warning" in capture.lines("stderr") and len(capture.lines()) >= 5)
    finally:
        await process.stop()

    # Then every line is logged with its stream, and no secret survives
    assert capture.lines()[0] == "hello from the gateway"
    assert "token is ***" in capture.lines()
    assert "key ***" in capture.lines()
    assert "Authorization: Bearer ***" in capture.lines()
    assert "green" in capture.lines()
    text = capture.stream.getvalue()
    assert TOKEN not in text and "sk-ant-api03-secretvalue" not in text and "abcdefghijklmnop" not in text


async def test_a_chatty_child_is_never_blocked_by_a_full_pipe(tmp_path: Path) -> None:
    # Given a child that writes 4 MB of output, including one 2 MB line, then exits on its own
    capture = LogCapture()
    code = (
        "import sys\n"
        "for i in range(20000): sys.stdout.write('line %d %s\\n' % (i, 'x' * 100))\n"
        "sys.stdout.write('y' * 2_000_000 + '\\n')\n"
        "sys.stderr.write('z' * 100 + '\\n')\n"
        "print('the end', flush=True)\n"
    )
    process = gateway(code, capture, tmp_path)

    # When it runs (a blocked pipe would stop it from ever exiting)
    await process.start()
    await eventually(lambda: not process.running)
    await process.stop()

    # Then it finished, and its last line was logged (long lines are cut, not lost or fatal)
    assert process.last_exit_code == 0
    assert capture.lines()[-1] == "the end"
    assert max(len(line) for line in capture.lines()) <= 8 * 1024


async def test_stop_terminates_the_child_and_does_not_restart_it(tmp_path: Path) -> None:
    # Given a running child
    capture = LogCapture()
    process = gateway(SLEEPER, capture, tmp_path, backoff_initial=0.01)
    await process.start()
    pid = process.pid
    assert pid is not None and process.running
    await eventually(lambda: capture.lines() == ["ready"])

    # When it is stopped
    code = await process.stop()

    # Then it ended on SIGTERM, is not running and was never restarted
    assert code == -15 == process.last_exit_code
    assert not process.running and not alive(pid)
    assert process.restarts == 0
    assert not capture.messages("gateway exited unexpectedly; restarting")


async def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    # Given a child that ignores SIGTERM
    capture = LogCapture()
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(120)\n"
    )
    process = gateway(code, capture, tmp_path)
    await process.start()
    await eventually(lambda: capture.lines() == ["ignoring SIGTERM"])

    # When it is stopped with a short grace period
    exit_code = await process.stop(timeout=0.5)

    # Then it was killed and the escalation was logged
    assert exit_code == -9
    assert not process.running
    assert capture.messages("gateway ignored SIGTERM; killing it")


async def test_unexpected_exits_are_restarted_with_exponential_backoff(tmp_path: Path) -> None:
    # Given a child that exits with status 3 straight away, and a short injected backoff
    capture = LogCapture()
    process = gateway(
        "import sys; print('starting', flush=True); sys.exit(3)",
        capture,
        tmp_path,
        backoff_initial=0.01,
        backoff_max=0.04,
    )

    # When it has been restarted a few times
    await process.start()
    await eventually(lambda: process.restarts >= 4)
    await process.stop()

    # Then each exit was logged with its code and the delay doubled up to the cap
    exits = capture.messages("gateway exited unexpectedly; restarting")
    assert [e["exit_code"] for e in exits[:4]] == [3, 3, 3, 3]
    assert [e["restart_in_seconds"] for e in exits[:4]] == [0.01, 0.02, 0.04, 0.04]


async def test_each_unexpected_exit_is_told_with_its_restart_delay_and_a_stop_is_not(tmp_path: Path) -> None:
    # Given a child that dies straight away, and a listener for unexpected exits
    told: list[tuple[float, int]] = []
    process: GatewayProcess | None = None

    def on_exit(restart_in: float) -> None:
        assert process is not None
        told.append((restart_in, process.restarts))

    process = gateway(
        "import sys; sys.exit(3)",
        LogCapture(),
        tmp_path,
        backoff_initial=0.01,
        backoff_max=0.02,
        on_exit=on_exit,
    )

    # When it has been restarted twice, then a long-lived child is stopped on purpose
    await process.start()
    await eventually(lambda: process.restarts >= 2)
    await process.stop()
    told_before_stop = len(told)
    calm = gateway(SLEEPER, LogCapture(), tmp_path, on_exit=on_exit)
    await calm.start()
    await calm.stop()

    # Then each death was told before its restart, with the delay the restart waits, and the stop was not
    assert told[:2] == [(0.01, 0), (0.02, 1)]
    assert len(told) == told_before_stop


async def test_backoff_resets_after_a_stable_run(tmp_path: Path) -> None:
    # Given a child that dies, but every run counts as stable
    capture = LogCapture()
    process = gateway("import sys; sys.exit(7)", capture, tmp_path, backoff_initial=0.01, stable_after=0)

    # When it has been restarted a few times
    await process.start()
    await eventually(lambda: process.restarts >= 3)
    await process.stop()

    # Then the delay never grew
    delays = [e["restart_in_seconds"] for e in capture.messages("gateway exited unexpectedly; restarting")]
    assert set(delays) == {0.01}


async def test_a_killed_child_is_restarted_and_the_new_one_serves(tmp_path: Path) -> None:
    # Given a running child that is ready on its port
    capture = LogCapture()
    port = free_port()
    process = gateway(readiness_server(port, 0), capture, tmp_path, backoff_initial=0.01)
    await process.start()
    await process.wait_until_ready(port, timeout=WAIT)
    first_pid = process.pid
    assert first_pid is not None

    # When the child is killed from outside
    os.kill(first_pid, 9)
    await eventually(lambda: process.restarts == 1)
    await process.wait_until_ready(port, timeout=WAIT)

    # Then a new child serves again, and the exit was recorded
    try:
        assert process.running and process.pid != first_pid
        assert process.restarts == 1
        assert capture.messages("gateway exited unexpectedly; restarting")[0]["exit_code"] == -9
    finally:
        await process.stop()


async def test_ready_waits_for_readyz_200_not_for_the_port_and_returns_promptly(tmp_path: Path) -> None:
    # Given a child that listens at once but says "not ready" (503) for its first 0.6 s
    capture = LogCapture()
    port = free_port()
    process = gateway(readiness_server(port, 0.6), capture, tmp_path)
    started = time.monotonic()
    await process.start()
    try:
        await eventually(lambda: capture.lines() == ["listening"])

        # When the bridge waits for it to be ready
        await process.wait_until_ready(port, timeout=WAIT)
        waited = time.monotonic() - started

        # Then it returned only once /readyz said 200, and within a poll or two of it (no fixed retries)
        assert 0.6 <= waited < 0.6 + 1.0
    finally:
        await process.stop()


async def test_ready_times_out_with_what_readyz_still_reports(tmp_path: Path) -> None:
    # Given a child that never becomes ready
    capture = LogCapture()
    port = free_port()
    process = gateway(readiness_server(port, 3600), capture, tmp_path)
    await process.start()
    # (its server must be listening before the short wait starts: a Python child on a busy machine can take
    # longer than the whole timeout to start, and the error would then have no /readyz answer to report)
    await eventually(lambda: port_accepts(port))

    # When / Then: the error names the port and what the gateway said was still failing
    try:
        with pytest.raises(TimeoutError, match=rf"{port}.*503.*startup-sidecars"):
            await process.wait_until_ready(port, timeout=0.5)
    finally:
        await process.stop()


async def test_helpers_in_the_childs_process_group_are_ended_too(tmp_path: Path) -> None:
    # Given a child that spawns a helper process and then gets stuck
    capture = LogCapture()
    code = (
        "import subprocess, sys, time\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(helper.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    process = gateway(code, capture, tmp_path)
    await process.start()
    await eventually(lambda: len(capture.lines()) == 1)
    helper_pid = int(capture.lines()[0])
    assert alive(helper_pid)

    # When the gateway is stopped
    await process.stop()

    # Then no orphan is left behind
    await eventually(lambda: not alive(helper_pid))


async def test_a_killed_child_whose_helpers_hold_its_pipes_is_still_restarted(tmp_path: Path) -> None:
    # Given a child whose helper inherited its stdout/stderr (as the gateway's spawn broker does)
    capture = LogCapture()
    code = (
        "import subprocess, sys, time\n"
        "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "print(helper.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    process = gateway(code, capture, tmp_path, backoff_initial=0.01)
    await process.start()
    await eventually(lambda: len(capture.lines()) == 1)
    first_pid, helper_pid = process.pid, int(capture.lines()[0])
    assert first_pid is not None

    # When the child is SIGKILLed (it cannot end its helper)
    os.kill(first_pid, 9)

    # Then the death is noticed and a new child started, and the orphaned helper was ended
    try:
        await eventually(lambda: process.restarts == 1)
        assert process.running and process.pid != first_pid
        await eventually(lambda: not alive(helper_pid))
    finally:
        await process.stop()


async def test_ready_times_out_when_nothing_listens(tmp_path: Path) -> None:
    # Given a running child that never opens the port
    capture = LogCapture()
    port = free_port()
    process = gateway(SLEEPER, capture, tmp_path)
    await process.start()

    # When / Then
    try:
        with pytest.raises(TimeoutError, match=rf"{port}.*nothing answered"):
            await process.wait_until_ready(port, timeout=0.3)
    finally:
        await process.stop()


async def test_start_twice_is_refused_and_stop_before_start_is_harmless(tmp_path: Path) -> None:
    # Given a process that was never started
    capture = LogCapture()
    process = gateway(SLEEPER, capture, tmp_path)

    # When / Then: stopping it does nothing
    assert await process.stop() is None
    assert process.pid is None and not process.running

    # and starting it twice is an error
    await process.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            await process.start()
    finally:
        await process.stop()


async def test_a_missing_executable_fails_start(tmp_path: Path) -> None:
    # Given a command that does not exist
    process = GatewayProcess([str(tmp_path / "no-such-node")], {}, cwd=tmp_path, log=LogCapture().logger)

    # When / Then
    with pytest.raises(FileNotFoundError):
        await process.start()
    assert not process.running


def test_an_empty_command_is_refused(tmp_path: Path) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match="command"):
        GatewayProcess([], {}, cwd=tmp_path)


def test_redact_hides_known_secrets_and_credential_shapes(tmp_path: Path) -> None:
    # Given a process that knows its token and an API key
    process = GatewayProcess(
        ["node"], {"OPENCLAW_GATEWAY_TOKEN": TOKEN, "OPENAI_API_KEY": "sk-proj-abcdefghijkl"}, cwd=tmp_path
    )

    # When / Then
    assert process.redact(f"ws auth {TOKEN} ok") == "ws auth *** ok"
    assert process.redact("apiKey: sk-proj-abcdefghijkl") == "apiKey: ***"
    assert process.redact('"token":"zzzzzzzzzzzz"') == '"token":"***"'
    assert process.redact("plain text about tokens") == "plain text about tokens"
