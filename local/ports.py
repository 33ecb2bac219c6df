"""Loopback ports for processes that bind them later: each agent task's bridge and OpenClaw gateway.

On Fargate every task has its own network namespace and the fixed ports of the image (8080, 18789). Here
all tasks share one loopback, and a port chosen at launch is bound seconds later (OpenClaw listens after
a boot of 10–60 s). A port taken from the kernel's ephemeral range may meanwhile become the source port of
an outgoing connection or be handed to another process that asked for a free one, and then the task's
gateway cannot listen while the bridge finds somebody else's listener there. So ports come from below
the ephemeral range, and each is held with an advisory lock file until its task ends: two stacks on one
machine, or test workers, never choose the same port. A process that dies releases its locks with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

PORT_RANGE = range(20000, 32000)
"""Below the ephemeral ranges of Linux (32768–60999) and macOS (49152–65535)."""

LOCK_DIRECTORY = Path(tempfile.gettempdir()) / "serverless-openclaw-ports"


class PortReservation:
    """A loopback port held for one process to bind; `release` once that process has ended."""

    def __init__(self, port: int, lock_fd: int) -> None:
        self.port = port
        self._lock_fd: int | None = lock_fd

    def release(self) -> None:
        """Let the port go (safe to call more than once)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the lock
            self._lock_fd = None


class NoFreePort(RuntimeError):
    """Every port tried was held or in use."""


def reserve_port(directory: Path = LOCK_DIRECTORY, attempts: int = 200) -> PortReservation:
    """A port no reservation holds and nothing listens on, held until released; NoFreePort otherwise."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for port in random.sample(PORT_RANGE, attempts):
        fd = os.open(directory / str(port), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if _bindable(port):
            return PortReservation(port, fd)
        os.close(fd)
    raise NoFreePort(
        f"no free loopback port in {PORT_RANGE.start}–{PORT_RANGE.stop - 1} after {attempts} tries"
    )


def _bindable(port: int) -> bool:
    with contextlib.closing(socket.socket()) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
