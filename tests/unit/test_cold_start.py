"""What a cold start imports: nothing a function needs only now and then (every import costs every start)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted(path.parent.name for path in ROOT.glob("functions/*/app.py"))

RARE = {
    "serverless_openclaw.telegram": "the Bot API client (a give-up notice)",
    "serverless_openclaw.store.telegram_links": "the Telegram link store (the webhook, /api/telegram)",
}
NEEDED_AT_START = {"telegram_webhook": {"serverless_openclaw.telegram"}}
"""The webhook talks to the Bot API on every update, so its client is part of its start."""


@functools.cache
def loaded_modules(function: str) -> frozenset[str]:
    """The modules a fresh interpreter holds after importing the function, as Lambda does at init."""
    env = {
        **os.environ,
        **TEST_ENV,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "shared")]),
    }
    probe = f"import json, sys; import functions.{function}.app; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return frozenset(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_leaves_rarely_needed_telegram_code_unimported(function: str) -> None:
    # Given a function started as Lambda starts it
    modules = loaded_modules(function)

    # When its modules are listed, Then Telegram code it needs only now and then was not imported yet
    expected_absent = set(RARE) - NEEDED_AT_START.get(function, set())
    assert modules & expected_absent == set(), [RARE[m] for m in modules & expected_absent]
    # (and the probe did import the function: its control plane is there)
    assert "serverless_openclaw.control_plane" in modules


@pytest.mark.parametrize("function", FUNCTIONS)
def test_a_cold_start_imports_no_type_stubs(function: str) -> None:
    # Given a function started as Lambda starts it (the stubs are installed here, as on a developer's machine)
    modules = loaded_modules(function)

    # When its modules are listed, Then none is a boto3 type stub: they exist for mypy (`if TYPE_CHECKING:`),
    # are not in the layer, and would cost every cold start. (boto3-stubs and botocore-stubs hold only .pyi
    # files in folders Python cannot import; the service stubs, mypy_boto3_*, are importable.)
    assert sorted(m for m in modules if m.startswith("mypy_boto3_")) == []
    assert "serverless_openclaw.control_plane" in modules
