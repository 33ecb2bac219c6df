"""The committed npm project OpenClaw is installed from, in the image and locally: what it may hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "bridge" / "openclaw"
DOCKERFILE = (ROOT / "bridge" / "Dockerfile").read_text()
# Packages whose npm install script never runs (`npm ci --ignore-scripts`, in the image and locally), each
# checked when it was added: openclaw's preinstall only checks the package manager and its postinstall
# prepares plugins it otherwise installs on demand; koffi's picks a prebuilt binary, which its per-platform
# optional packages (@koromix/koffi-*) provide; protobufjs's checks its CLI's version; @google/genai's is
# a no-op.
REVIEWED_INSTALL_SCRIPTS = {"openclaw", "koffi", "protobufjs", "@google/genai"}


def _lock() -> dict[str, Any]:
    return dict(json.loads((PROJECT / "package-lock.json").read_text()))


def _entries() -> dict[str, dict[str, Any]]:
    return {path: entry for path, entry in _lock()["packages"].items() if path}


def _name(path: str) -> str:
    return path.rsplit("node_modules/", 1)[-1]


def test_the_lock_pins_the_openclaw_version_of_the_template_makefile_and_dockerfile() -> None:
    # Given the version the stack runs, the one make installs and the one the image checks
    parameter = load_template()["Parameters"]["OpenClawVersion"]["Default"]
    makefile = re.search(r"^OPENCLAW_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    dockerfile = re.search(r"^ARG OPENCLAW_VERSION=(\S+)$", DOCKERFILE, re.MULTILINE)

    # When the committed project and its lockfile are read
    package = json.loads((PROJECT / "package.json").read_text())
    lock = _lock()

    # Then the project asks for exactly that version (no range), and the lock resolved exactly it
    assert makefile and dockerfile
    assert package["dependencies"] == {"openclaw": parameter}
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    assert lock["packages"]["node_modules/openclaw"]["version"] == parameter
    assert parameter == makefile.group(1) == dockerfile.group(1)


def test_the_image_and_the_local_install_both_npm_ci_the_committed_project() -> None:
    # Given the image's build and the local installer
    runtime_source = (ROOT / "local" / "runtime.py").read_text()

    # Then both install with `npm ci` (the lockfile's tree, nothing resolved anew), without dev packages
    # or install scripts, from bridge/openclaw, which the build context lets through
    assert re.search(r"^RUN npm ci --omit=dev .*--ignore-scripts", DOCKERFILE, re.MULTILINE)
    assert "bridge/openclaw/package.json bridge/openclaw/package-lock.json" in DOCKERFILE
    assert '"ci", "--omit=dev"' in runtime_source and '"--ignore-scripts"' in runtime_source
    assert "npm install" not in DOCKERFILE
    context = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"!bridge/openclaw/package.json", "!bridge/openclaw/package-lock.json"} <= set(context)


def test_the_lock_holds_no_dev_packages_and_every_download_is_verified() -> None:
    # Given every package in the lock
    lock = _lock()
    entries = _entries()

    # Then it is a v3 lock, no package is dev-only, and each download is checked by a sha512 integrity
    # (bundled packages come inside their parent's tarball); none is a link, a folder or a git checkout
    assert lock["lockfileVersion"] == 3
    assert [path for path, entry in entries.items() if entry.get("dev") or entry.get("devOptional")] == []
    unverified = [
        path
        for path, entry in entries.items()
        if not entry.get("inBundle") and not str(entry.get("integrity", "")).startswith("sha512-")
    ]
    assert unverified == []
    assert [path for path, entry in entries.items() if entry.get("link")] == []
    odd_sources = [
        path
        for path, entry in entries.items()
        if "resolved" in entry and not str(entry["resolved"]).startswith("https://registry.npmjs.org/")
    ]
    assert odd_sources == []


def test_platform_packages_are_optional_and_the_arm64_image_finds_its_own() -> None:
    # Given the packages restricted to an OS or CPU (prebuilt native code), and who asks for them
    entries = _entries()
    platform_specific = {
        _name(path): entry for path, entry in entries.items() if entry.get("os") or entry.get("cpu")
    }
    parents = {
        _name(path): set(entry.get("optionalDependencies") or {})
        for path, entry in entries.items()
        if set(entry.get("optionalDependencies") or {}) & set(platform_specific)
    }

    # Then each is optional (npm skips the others' on each platform instead of failing)
    assert [name for name, entry in platform_specific.items() if not entry.get("optional")] == []
    # And every package that offers Linux builds offers one for the image's linux/arm64 with glibc
    for parent, offered in parents.items():
        linux = [platform_specific[name] for name in offered & set(platform_specific)]
        linux = [entry for entry in linux if "linux" in entry.get("os", [])]
        arm64_glibc = [
            entry
            for entry in linux
            if "arm64" in entry.get("cpu", []) and "musl" not in entry.get("libc", [])
        ]
        assert not linux or arm64_glibc, f"{parent} has no linux/arm64 (glibc) build in the lock"


def test_only_reviewed_packages_have_install_scripts() -> None:
    # Given the packages whose install script `--ignore-scripts` skips
    with_scripts = {_name(path) for path, entry in _entries().items() if entry.get("hasInstallScript")}

    # Then they are the reviewed ones: a new one must be checked for working without its script
    assert with_scripts == REVIEWED_INSTALL_SCRIPTS
