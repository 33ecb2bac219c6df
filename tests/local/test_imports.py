"""The local stack hosts every function in one process, as Lambda hosts each in its own. Powertools'
objects in the shared package (`serverless_openclaw.observability`: the logger and the metrics with their
namespace) read their settings from the environment when first imported, so that first import must happen
while a function's template environment is in place (FunctionHost.load), never earlier at the stack's own
start: else every function's metrics lose their namespace and each invocation fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.harness import REPO, user_environment

SHARED_WITH_SETTINGS = "serverless_openclaw.observability"


@pytest.mark.parametrize("module", ["local.__main__", "local.stack", "local.invoke"])
def test_starting_the_stack_or_invoke_leaves_the_shared_package_to_the_functions(module: str) -> None:
    # Given a person's environment (no Powertools settings of their own)
    probe = f"import sys, {module}; print({SHARED_WITH_SETTINGS!r} in sys.modules)"

    # When the local stack's entry points are imported
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env=user_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then none of them imported the shared package's Powertools objects
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
