"""Supervises the OpenClaw gateway child process: start, drain its output, restart with backoff, stop.

The child runs in its own process group (session) so that stopping it also ends the helper processes it
spawns (spawn broker, SQLite workers), even when it was killed before it could end them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from aws_lambda_powertools import Logger

from serverless_openclaw.observability import logger as default_logger

_STREAM_LIMIT: Final = 1024 * 1024
_MAX_LOGGED_LINE: Final = 8 * 1024
_GROUP_GRACE_SECONDS: Final = 2.0
_POLL_SECONDS: Final = 0.05
_DRAIN_SECONDS: Final = 5.0
_PROBE_SECONDS: Final = 2.0
_MAX_PROBE_BYTES: Final = 64 * 1024
# Values of these variables never appear in our logs, whatever the child prints.
_SECRET_ENV = re.compile(r"(TOKEN|_API_KEY|SECRET|PASSWORD)", re.I)
# Shapes that look like credentials even when we do not know the value (a key pasted into a chat, say).
_SECRET_SHAPES: Final = (
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(
        r"(?i)\b((?:token|api[_-]?key|authorization|secret)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/-]{8,}"
    ),
    re.compile(r"\b()sk-[A-Za-z0-9_-]{10,}"),
)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class GatewayProcess:
    """The OpenClaw gateway as a supervised child: restarted with backoff when it dies unexpectedly."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        stable_after: float = 60.0,
        on_exit: Callable[[float], None] | None = None,
        log: Logger | None = None,
    ) -> None:
        if not command:
            raise ValueError("command must not be empty")
        self._command = list(command)
        self._env = dict(env)
        self._cwd = cwd
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        # A child that ran this long before dying was healthy: the next restart starts from the short delay.
        self._stable_after = stable_after
        # Told (with the delay before the restart) as soon as the child dies unexpectedly, so users can be.
        self._on_exit = on_exit
        self._log = log or default_logger
        self._secrets = sorted(
            (value for name, value in env.items() if _SECRET_ENV.search(name) and len(value) >= 6),
            key=len,
            reverse=True,
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._readers: list[asyncio.Task[None]] = []
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._spawn_lock = asyncio.Lock()
        self._restarts = 0
        self._last_exit_code: int | None = None

    @property
    def running(self) -> bool:
        """Whether the child is alive right now."""
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        """The current child's PID (None before start)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def restarts(self) -> int:
        """How many times the supervisor restarted the child after an unexpected exit."""
        return self._restarts

    @property
    def last_exit_code(self) -> int | None:
        """The exit status of the last child that ended (negative: killed by that signal)."""
        return self._last_exit_code

    async def start(self) -> None:
        """Start the child and the supervisor that restarts it if it dies."""
        if self._supervisor is not None and not self._supervisor.done():
            raise RuntimeError("the gateway process is already started")
        self._stopping.clear()
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="gateway-supervisor")

    async def stop(self, timeout: float = 15) -> int | None:
        """Stop the child: SIGTERM, wait up to timeout, then SIGKILL; returns its exit status."""
        self._stopping.set()
        async with self._spawn_lock:  # never race a restart that is spawning right now
            proc = self._proc
        if proc is not None and proc.returncode is None:
            self._log.info("stopping gateway", pid=proc.pid, timeout=timeout)
            self._signal_leader(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(_exited(proc), timeout)
            except TimeoutError:
                self._log.warning("gateway ignored SIGTERM; killing it", pid=proc.pid, timeout=timeout)
                self._signal_group(proc.pid, signal.SIGKILL)
                await _exited(proc)
        if proc is not None:
            await self._finish(proc)
        if self._supervisor is not None:
            await self._supervisor
            self._supervisor = None
        return self._last_exit_code

    async def wait_until_ready(self, port: int, timeout: float) -> None:
        """Return once the gateway's `/readyz` on 127.0.0.1:port answers 200; TimeoutError after timeout s.

        Polled every 50 ms: the gateway listens seconds before it is ready (and refuses `connect` with
        UNAVAILABLE meanwhile), so the first handshake after this returns succeeds instead of backing off.
        """
        deadline = time.monotonic() + timeout
        last = "nothing listened"
        while True:
            if self._stopping.is_set():
                raise RuntimeError("the gateway process was stopped")
            try:
                status, body = await asyncio.wait_for(_get("127.0.0.1", port, "/readyz"), _PROBE_SECONDS)
            except (OSError, TimeoutError, ValueError) as error:
                last = f"nothing answered ({type(error).__name__})"
            else:
                if status == 200:
                    return
                last = f"/readyz answered {status} {body[:_MAX_LOGGED_LINE]}"
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"the gateway on 127.0.0.1:{port} was not ready within {timeout} s: {last}; "
                    "its output above says why"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def _spawn(self) -> None:
        """Start one child process and the tasks that drain its output."""
        async with self._spawn_lock:
            if self._stopping.is_set():
                return
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                env=self._env,
                cwd=self._cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_STREAM_LIMIT,
                # Its own process group: stop() and the supervisor can end the helpers it spawns too.
                start_new_session=True,
            )
            self._proc = proc
            self._started_at = time.monotonic()
            # Both were asked for as pipes just above: this check only tells the type checker so.
            if proc.stdout is None or proc.stderr is None:
                raise RuntimeError("the gateway process has no stdout/stderr pipe to read its log from")
            self._readers = [
                asyncio.create_task(self._drain(proc.stdout, "stdout", proc.pid), name="gateway-stdout"),
                asyncio.create_task(self._drain(proc.stderr, "stderr", proc.pid), name="gateway-stderr"),
            ]
            self._log.info("gateway started", pid=proc.pid)

    async def _supervise(self) -> None:
        """Run the supervision loop; a bug in it is logged loudly rather than lost in a dropped task."""
        try:
            await self._supervise_loop()
        except Exception:
            self._log.exception("gateway supervisor failed; the gateway will not be restarted")

    async def _supervise_loop(self) -> None:
        """Wait for the child to end; unless stop() ended it, restart it after an exponential backoff."""
        failures = 0
        while True:
            proc = self._proc
            if proc is None:
                return
            code = await _exited(proc)
            ran_for = time.monotonic() - self._started_at
            failures = 1 if ran_for >= self._stable_after else failures + 1
            delay = min(self._backoff_initial * 2 ** (failures - 1), self._backoff_max)
            if not self._stopping.is_set():
                self._exited_unexpectedly(delay)
            await self._finish(proc)
            if self._stopping.is_set():
                self._log.info("gateway stopped", pid=proc.pid, exit_code=code)
                return
            self._log.warning(
                "gateway exited unexpectedly; restarting",
                pid=proc.pid,
                exit_code=code,
                ran_seconds=round(ran_for, 3),
                restart_in_seconds=delay,
            )
            if not await self._restart_after(delay):
                return

    def _exited_unexpectedly(self, restart_in: float) -> None:
        """Tell `on_exit` before the child's leftovers are cleaned up (which can take seconds)."""
        if self._on_exit is None:
            return
        try:
            self._on_exit(restart_in)
        except Exception:  # a broken listener must not stop the restart
            self._log.exception("gateway exit listener failed")

    async def _restart_after(self, delay: float) -> bool:
        """Sleep for delay (cut short by stop()), then spawn again; False once stopping."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return False
            try:
                await self._spawn()
            except OSError as error:
                self._log.error("gateway could not be started", error=str(error), retry_in_seconds=delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            if self._stopping.is_set():
                return False
            self._restarts += 1
            return True

    async def _finish(self, proc: asyncio.subprocess.Process) -> None:
        """Record the exit status, end leftover helpers of that child and let its output drain."""
        self._last_exit_code = proc.returncode
        # Helpers inherit the child's stdout/stderr: until they are gone the pipes never reach EOF.
        await self._end_group(proc.pid)
        readers, self._readers = self._readers, []
        if readers:
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_SECONDS)
            for reader in pending:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        # Lets the transport close now that its pipes are done (it waits for them, not only for the exit).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), _DRAIN_SECONDS)

    async def _end_group(self, pgid: int) -> None:
        """SIGTERM, then SIGKILL, whatever is left in the child's process group once it has exited."""
        if not _group_alive(pgid):
            return
        self._signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + _GROUP_GRACE_SECONDS
        while _group_alive(pgid) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_SECONDS)
        if _group_alive(pgid):
            self._log.warning("gateway helpers outlived it; killing them", pgid=pgid)
            self._signal_group(pgid, signal.SIGKILL)

    def _signal_leader(self, proc: asyncio.subprocess.Process, signum: signal.Signals) -> None:
        # os.kill, not proc.send_signal: Popen polls (reaps) first, racing asyncio's child watcher, which
        # then reports an exit status of 255 instead of the real one.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signum)

    def _signal_group(self, pgid: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signum)

    async def _drain(self, stream: asyncio.StreamReader, name: str, pid: int) -> None:
        """Log the child's output line by line, so a full pipe never blocks it."""
        while True:
            try:
                line = await stream.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:
                line = end.partial
                if not line:
                    return
            except asyncio.LimitOverrunError as long_line:
                line = await stream.read(long_line.consumed)
            except (ValueError, OSError):
                return
            text = self.redact(_ANSI.sub("", line.decode("utf-8", "replace")).rstrip())
            if text:
                self._log.info("gateway output", stream=name, pid=pid, line=text[:_MAX_LOGGED_LINE])

    def redact(self, text: str) -> str:
        """The text with the gateway token, API keys and credential-shaped strings replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        for shape in _SECRET_SHAPES:
            text = shape.sub(lambda match: f"{match.group(1)}***", text)
        return text


async def _get(host: str, port: int, path: str) -> tuple[int, str]:
    """One HTTP/1.1 GET on loopback: the status code and (the start of) the body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        # Until the server closes (Connection: close) or the cap: one read returns only what has arrived,
        # and a server that writes its head and body separately would leave the body out of the answer.
        answer = b""
        while len(answer) < _MAX_PROBE_BYTES:
            chunk = await reader.read(_MAX_PROBE_BYTES - len(answer))
            if not chunk:
                break
            answer += chunk
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise ValueError("not an HTTP answer")
    return int(status_line[1]), body.decode("utf-8", "replace").strip()


async def _exited(proc: asyncio.subprocess.Process) -> int:
    """The child's exit status, as soon as it exits.

    Not proc.wait(): that also waits for the stdout/stderr pipes to close, and helpers the child spawned
    hold them open after it died (a SIGKILLed gateway would then never be noticed, nor restarted).
    """
    while proc.returncode is None:
        await asyncio.sleep(_POLL_SECONDS)
    return proc.returncode


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the process group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # Fields after the parenthesised command name: state, ppid, pgrp, …
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False
