"""The shared layer as `sam build` builds it (layers/shared/Makefile), for the tests and the benchmark."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER_MAKEFILE = ROOT / "layers" / "shared" / "Makefile"
LAYER_TARGET = "build-SharedLayer"
"""`sam build` runs `make build-<LogicalId>` for a resource whose BuildMethod is makefile."""


def python312() -> str | None:
    """A python3.12 that runs (PATH first, then pyenv's, as the Makefile looks); None when there is none."""
    candidates = [shutil.which("python3.12") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def build_layer(
    artifacts: Path, python: str, *, pip_args: str | None = None, requirements: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the layer's make target into `artifacts` (its python/ folder is the layer's content)."""
    command = ["make", "--no-print-directory", "-f", str(LAYER_MAKEFILE), LAYER_TARGET]
    command += [f"ARTIFACTS_DIR={artifacts}", f"PYTHON312={python}"]
    if pip_args is not None:
        command.append(f"PIP_TARGET_ARGS={pip_args}")
    if requirements is not None:
        command.append(f"REQUIREMENTS={requirements}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
