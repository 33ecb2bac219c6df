"""The local stack's state directory (`.local/`): which stack owns it, and how others find that stack.

One stack at a time runs on a state directory. It holds an exclusive lock on `stack.lock` for as long as
it runs, and only the holder writes `endpoints.json` (once it is ready) and removes it (when it stops):
a second `make dev` refused for the same directory leaves both alone. `invoke` and `reset` find the
running stack through `endpoints.json` and the process id in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any

ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "stack.lock"


class StateDirectory:
    """A state directory as the stack running on it sees it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock: IO[str] | None = None

    @property
    def endpoints_path(self) -> Path:
        """`endpoints.json`: what scripts, tests and `invoke` need to drive the running stack."""
        return self.path / ENDPOINTS_FILE

    @property
    def owned(self) -> bool:
        """Whether this process holds the directory."""
        return self._lock is not None

    def take(self) -> bool:
        """Hold the directory for this process; False when another stack already holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = (self.path / LOCK_FILE).open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            return False
        self._lock = lock
        return True

    def write_endpoints(self, endpoints: dict[str, Any]) -> None:
        """Publish the running stack's endpoints (readable by this user only: they carry the demo login)."""
        if not self.owned:
            raise RuntimeError(f"{self.path} is held by another stack; its endpoints are not ours to write")
        temporary = self.endpoints_path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(endpoints, out, indent=2)
        os.replace(temporary, self.endpoints_path)

    def release(self) -> None:
        """Withdraw the endpoints and let go of the directory; nothing at all when another stack holds it."""
        if self._lock is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.endpoints_path.unlink()
        self._lock.close()
        self._lock = None


def running_stack(path: Path) -> dict[str, Any] | None:
    """The endpoints of the stack running on a state directory; None when there is none (no or a damaged
    `endpoints.json`, or one left by a stack that was killed)."""
    try:
        endpoints = json.loads((path / ENDPOINTS_FILE).read_text())
        os.kill(int(endpoints["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return endpoints if isinstance(endpoints, dict) else None
