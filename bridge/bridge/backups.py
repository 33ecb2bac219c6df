"""When the bridge backs up: soon after each answered run (debounced), periodically while a run is going,
and once more at shutdown; one backup at a time, a failure logged and retried by the next one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from bridge.metrics import BridgeMetrics
from bridge.parts import Sync
from serverless_openclaw.observability import logger


class Backups:
    """Runs the sync's incremental backups in a thread, on the schedule above; `last` for /status."""

    def __init__(
        self,
        sync: Sync,
        metrics: BridgeMetrics,
        *,
        clock: Callable[[], float],
        debounce: float,
        interval: float,
    ) -> None:
        self._sync = sync
        self._metrics = metrics
        self._clock = clock
        self._debounce = debounce
        self._interval = interval
        self._due = asyncio.Event()
        self._lock = asyncio.Lock()
        self.last: dict[str, Any] | None = None

    def due(self) -> None:
        """A run was answered: back up soon (after the debounce)."""
        self._due.set()

    async def run_forever(self, *, busy: Callable[[], bool], stopping: Callable[[], bool]) -> None:
        """Back up after each answered run, and every `interval` while `busy()`, until `stopping()`."""
        while not stopping():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._interval)
            if self._due.is_set():
                self._due.clear()
                await asyncio.sleep(self._debounce)
            elif not busy():
                continue
            await self.backup("run")

    async def backup(self, reason: str) -> None:
        """One incremental backup; failures are logged and retried by the next one."""
        async with self._lock:
            try:
                report = await asyncio.to_thread(self._sync.backup)
            except Exception:
                logger.exception("backup failed", reason=reason)
                return
        self.last = {
            "at": self._clock(),
            "reason": reason,
            "uploaded": report.uploaded,
            "deleted": report.deleted,
            "bytes": report.bytes,
            "seconds": report.seconds,
        }
        logger.info("backup done", **self.last)
        self._metrics.count("BackupCompleted")
