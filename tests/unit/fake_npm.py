"""npm as far as an OpenClaw upgrade uses it, offline: `install --prefix DIR --package-lock-only openclaw@V`.

It rewrites DIR's package.json and package-lock.json the way npm would for that version (the openclaw entry
only). Played in-process by the deploy rehearsal, and run as an `npm` executable on PATH by
tests/unit/test_openclaw_pin.py (`python -m tests.unit.fake_npm ARGS…`). Environment variables steer it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

NPM_LOG_ENV = "FAKE_NPM_LOG"
"""Where npm_main appends each call (argument list, then the PATH it ran with), when set."""
NPM_RESOLVES_ENV = "FAKE_NPM_RESOLVES"
"""The openclaw version npm_main writes into the lock instead of the one asked for (a registry surprise)."""
NPM_EXIT_ENV = "FAKE_NPM_EXIT"
"""An exit code npm_main fails with, writing nothing (an unknown version, an unreachable registry)."""


def npm_main(args: Sequence[str]) -> int:
    """`npm install --prefix DIR --package-lock-only … openclaw@VERSION`, offline: DIR's project re-pinned."""
    log = os.environ.get(NPM_LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as calls:
            calls.write(json.dumps({"args": list(args), "path": os.environ.get("PATH", "")}) + "\n")
    if os.environ.get(NPM_EXIT_ENV):
        print("npm error 404 Not Found - GET https://registry.npmjs.org/openclaw", file=sys.stderr)
        return int(os.environ[NPM_EXIT_ENV])
    if args[0] != "install" or "--package-lock-only" not in args:
        print(f"fake npm: only `install --package-lock-only` is played, not {args[0]}", file=sys.stderr)
        return 1
    project = Path(args[list(args).index("--prefix") + 1])
    asked = next(arg for arg in args if arg.startswith("openclaw@")).split("@", 1)[1]
    resolved = os.environ.get(NPM_RESOLVES_ENV) or asked
    package = json.loads((project / "package.json").read_text())
    package["dependencies"] = {"openclaw": asked}
    (project / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    lock = json.loads((project / "package-lock.json").read_text())
    lock["packages"][""]["dependencies"] = {"openclaw": asked}
    entry = lock["packages"]["node_modules/openclaw"]
    entry["version"] = resolved
    entry["resolved"] = f"https://registry.npmjs.org/openclaw/-/openclaw-{resolved}.tgz"
    entry["integrity"] = "sha512-" + base64.b64encode(hashlib.sha512(resolved.encode()).digest()).decode()
    (project / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(npm_main(sys.argv[1:]))
