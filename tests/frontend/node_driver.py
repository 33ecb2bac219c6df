"""Running one scenario of a Node driver (`*_driver.mjs`) over the web chat's real modules."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local.runtime import REPO, runtime


def drive(driver: Path, scenario: str, *arguments: str) -> Any:
    """Run `scenario` of `driver` under the pinned Node and return the JSON it printed."""
    node = runtime().node
    if not node.exists():
        pytest.fail(f"Node is missing ({node.relative_to(REPO)}): run `make openclaw` first", pytrace=False)
    done = subprocess.run(
        # frontend/package.json has no "type": Node detects the ES modules by itself, and says so on stderr.
        [str(node), "--disable-warning=MODULE_TYPELESS_PACKAGE_JSON", str(driver), scenario, *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
