"""How `pytest -n` spreads the tests over xdist workers (`make test` runs `-n auto`).

Most of the suite's time is a few dozen end-to-end and contract tests of one to three minutes each, mostly
spent booting OpenClaw (CPU-bound), beside a thousand tests of milliseconds. xdist's default scheduler
hands each worker a large share of the collection up front, so a worker can end up running the last
long tests alone while the other has nothing left. This one hands out one test at a time, the long tiers
first, so the short tests fill the gaps at the end; and it keeps the tests of the contract tier's shared
gateway on one worker, which would otherwise boot a gateway of its own on each (20 s of CPU).

(`--dist loadgroup` would express the grouping with a mark, but with pytest 9 xdist's renaming of node
ids is lost, so the groups are named here by module.)
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

LONG_TIERS = ("tests/contract/", "tests/e2e/")
"""Minutes per test: started first."""

SHARED_FIXTURE_MODULES = frozenset({"tests/contract/test_gateway_smoke.py"})
"""Modules whose tests share one expensive fixture: one worker runs them all."""


def scope_of(nodeid: str) -> str:
    """The unit of work a test belongs to: its module when the module shares a fixture, else itself."""
    module = nodeid.split("::", 1)[0]
    return module if module in SHARED_FIXTURE_MODULES else nodeid


def priority(scope: str) -> int:
    """0 for the long tiers (and the shared-fixture modules, which are among them), 1 for the rest."""
    return 0 if scope.startswith(LONG_TIERS) else 1


class LongTestsFirst(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
    """One unit of work at a time per free worker, long tiers first; shared-fixture modules are one unit."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self._ordered:
            # The queue is complete when the first unit is handed out; a stable sort keeps collection order
            # within each priority.
            self._ordered = True
            ordered = sorted(self.workqueue.items(), key=lambda unit: priority(unit[0]))
            self.workqueue.clear()
            self.workqueue.update(ordered)
        super()._assign_work_unit(node)
