"""End-to-end fixtures: a real local stack per test (real functions, real bridge, real OpenClaw)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local.runtime import runtime
from tests.e2e.harness import LocalStackProcess


@pytest.fixture
def start_stack(tmp_path: Path) -> Iterator[Callable[..., LocalStackProcess]]:
    """Start `python -m local up` (extra CLI arguments allowed); every stack started is stopped after."""
    rt = runtime()
    if not rt.installed:
        pytest.fail("the pinned OpenClaw runtime is missing: run `make openclaw` first", pytrace=False)
    started: list[LocalStackProcess] = []

    def start(*args: str, state_dir: Path | None = None) -> LocalStackProcess:
        stack = LocalStackProcess(state_dir or tmp_path / "state", *args)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        stack.stop()
