"""When the bridge backs up: after an answered run (debounced), every interval while busy, one at a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Collection

from bridge.backups import Backups
from bridge.state_sync import BackupReport, RestoreReport


class CountingSync:
    """A sync whose backups take `seconds` and can be told to fail; it counts overlapping backups."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.calls = 0
        self.fail = False
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def restore(self, only: Collection[str] | None = None, /) -> RestoreReport:
        return RestoreReport(0, 0, 0.0)

    def backup(self) -> BackupReport:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            threading.Event().wait(self.seconds)
            if self.fail:
                raise OSError("disk gone")
            return BackupReport(
                uploaded=2, deleted=1, unchanged=3, bytes=10, requests=4, seconds=self.seconds
            )
        finally:
            with self._lock:
                self.running -= 1


async def _until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


class Metrics:
    def __init__(self) -> None:
        self.counts: list[str] = []

    def count(self, name: str) -> None:
        self.counts.append(name)


def _backups(sync: CountingSync, **timing: float) -> tuple[Backups, Metrics]:
    metrics = Metrics()
    return Backups(sync, metrics, clock=lambda: 1000.0, **timing), metrics  # type: ignore[arg-type]


async def test_an_answered_run_is_backed_up_after_the_debounce_and_an_idle_agent_is_left_alone() -> None:
    # Given an idle agent
    sync = CountingSync()
    backups, metrics = _backups(sync, debounce=0.2, interval=0.05)
    stopping = False
    loop = asyncio.create_task(backups.run_forever(busy=lambda: False, stopping=lambda: stopping))
    await asyncio.sleep(0.2)
    # Then nothing is backed up while nothing happens
    assert sync.calls == 0
    # When a run is answered
    backups.due()
    await asyncio.sleep(0.1)
    # Then the backup waits for the debounce, then runs once and is reported
    assert sync.calls == 0
    await _until(lambda: metrics.counts == ["BackupCompleted"])
    assert sync.calls == 1
    assert backups.last == {
        "at": 1000.0,
        "reason": "run",
        "uploaded": 2,
        "deleted": 1,
        "bytes": 10,
        "seconds": 0.0,
    }
    stopping = True
    await asyncio.wait_for(loop, 1)


async def test_a_long_run_is_backed_up_every_interval_while_it_is_busy() -> None:
    sync = CountingSync()
    backups, _ = _backups(sync, debounce=0, interval=0.05)
    stopping = False
    loop = asyncio.create_task(backups.run_forever(busy=lambda: True, stopping=lambda: stopping))
    # Then it is backed up again and again without any run being answered
    await _until(lambda: sync.calls >= 3)
    stopping = True
    await asyncio.wait_for(loop, 1)


async def test_backups_never_overlap_and_a_failure_is_retried_by_the_next_one() -> None:
    # Given a slow sync that fails once
    sync = CountingSync(seconds=0.1)
    sync.fail = True
    backups, metrics = _backups(sync, debounce=0, interval=60)
    # When the shutdown backup starts while a run's backup is going
    await asyncio.gather(backups.backup("run"), backups.backup("shutdown"))
    # Then they ran one after the other, the failure was not raised, and the next one is recorded
    assert sync.calls == 2 and sync.most_at_once == 1
    assert backups.last is None and metrics.counts == []
    sync.fail = False
    await backups.backup("shutdown")
    assert backups.last is not None and backups.last["reason"] == "shutdown"
    assert metrics.counts == ["BackupCompleted"]
