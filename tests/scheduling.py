"""How `pytest -n` spreads the tests over xdist workers (`make test` runs `-n auto`).

Most of the suite's time is a few dozen end-to-end and contract tests of one to four minutes each, mostly
spent booting OpenClaw (CPU-bound), beside a thousand tests of milliseconds. xdist's default scheduler
hands each worker a large share of the collection up front, so a worker can end up running the last
long tests alone while the other has nothing left. This one hands out one test at a time, longest first
(what each took in the last recorded run, tests/durations.json), so the last long test starts early
enough for the other worker to fill the time with short ones; and it keeps the tests of the contract
tier's shared gateway on one worker, which would otherwise boot a gateway of its own on each (20 s of CPU).

The table is refreshed by a full run with `--record-durations` (make test-all PYTEST_ARGS="-n auto
--record-durations"); a test missing from it counts as a minute in the long tiers and as nothing
elsewhere, so a new end-to-end test still starts among the long ones.

(`--dist loadgroup` would express the grouping with a mark, but with pytest 9 xdist's renaming of node
ids is lost, so the groups are named here by module.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

DURATIONS = Path(__file__).with_name("durations.json")
"""Seconds per test id (setup, call and teardown) in the last recorded run, for tests of a second or more."""

LONG_TIERS = ("tests/contract/", "tests/e2e/")
"""Minutes per test."""

UNKNOWN_LONG_SECONDS = 60.0
"""What a test of the long tiers missing from the table is expected to take."""

RECORDED_MIN_SECONDS = 1.0
"""Shorter tests are left out of the table: they count as nothing, in collection order."""

SHARED_FIXTURE_MODULES = frozenset(
    {
        "tests/contract/test_gateway_smoke.py",  # one gateway for all its tests
        "tests/contract/test_trimmed_tree.py",  # one trimmed copy of the OpenClaw tree (~35 s to make)
    }
)
"""Modules whose tests share one expensive module-scoped fixture: one worker runs them all, so it is made
once (split, pytest makes it again each time the worker comes back to the module)."""

SHARED_FIXTURE_FOLDERS = ("tests/e2e/browser/",)
"""Folders whose every module shares one: the browser tests' local stack (`shared_stack`, ~7 s to start)."""


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module when the module shares a fixture, else itself."""
    module = nodeid.split("::", 1)[0]
    shared = module in SHARED_FIXTURE_MODULES or module.startswith(SHARED_FIXTURE_FOLDERS)
    return module if shared else nodeid


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    """The recorded seconds per test id; empty when the table is missing or unreadable (order only)."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in table.items()} if isinstance(table, dict) else {}


def expected_seconds(nodeid: str, durations: Mapping[str, float]) -> float:
    """How long a test is expected to take: its recorded time, else a minute in the long tiers, else 0."""
    if nodeid in durations:
        return durations[nodeid]
    return UNKNOWN_LONG_SECONDS if nodeid.startswith(LONG_TIERS) else 0.0


def longest_first(units: Iterable[tuple[str, dict[str, bool]]], durations: Mapping[str, float]) -> list[Any]:
    """Units of work ordered by their expected seconds, longest first; ties keep collection order."""
    return sorted(units, key=lambda unit: -sum(expected_seconds(nodeid, durations) for nodeid in unit[1]))


class LongTestsFirst(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
    """One unit of work at a time per free worker, longest first; shared-fixture modules are one unit."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ordered:
            # The queue is complete when the first unit is handed out.
            self._ordered = True
            ordered = longest_first(self.workqueue.items(), load_durations())
            self.workqueue.clear()
            self.workqueue.update(ordered)
        super()._assign_work_unit(node)


class DurationRecorder:
    """`--record-durations`: writes tests/durations.json from this run (setup + call + teardown per test).

    Under xdist the controller sees every worker's reports, so one full `-n auto` run records them all."""

    def __init__(self, path: Path = DURATIONS) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Add one phase's time to its test."""
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the tests of a second or more, longest first (a worker of xdist writes nothing)."""
        if hasattr(session.config, "workerinput") or not self.seconds:
            return
        table = {
            nodeid: round(seconds, 1)
            for nodeid, seconds in sorted(self.seconds.items(), key=lambda item: -item[1])
            if seconds >= RECORDED_MIN_SECONDS
        }
        self.path.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
