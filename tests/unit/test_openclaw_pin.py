"""scripts/openclaw_pin.py: an OpenClaw upgrade rewrites the lockfile and every pin together, or nothing.

npm is tests/unit/fake_npm.py installed as an `npm` executable on PATH and run by the real CommandRunner
(offline: it rewrites the project's lock for the version asked), on a copy of the repository's pinned files.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

from local.template import load_template
from scripts import openclaw_pin
from scripts.aws_errors import Failure, UsageError
from scripts.bridge_image import REPOSITORY
from scripts.commands import CommandRunner
from tests.unit.deploy_rehearsal import PINNED_FILES, copy_checkout
from tests.unit.fake_npm import NPM_EXIT_ENV, NPM_LOG_ENV, NPM_RESOLVES_ENV

NEWER = "2026.10.1"
PINNED = json.loads((REPOSITORY / "bridge/openclaw/package-lock.json").read_text())["packages"][
    "node_modules/openclaw"
]["version"]


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repository's pinned files, and a fake npm first on PATH that logs its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_module('tests.unit.fake_npm', run_name='__main__')\n"
    )
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPOSITORY))
    monkeypatch.setenv(NPM_LOG_ENV, str(tmp_path / "npm.log"))
    return copy_checkout(tmp_path / "checkout")


def snapshot(root: Path) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in PINNED_FILES}


def npm_calls(tmp_path: Path) -> list[dict[str, object]]:
    log = tmp_path / "npm.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def pin(root: Path, version: str = NEWER) -> tuple[openclaw_pin.Pinned, str]:
    """Pin with the real runner (npm is the fake on PATH) and a stand-in local Node; what was printed."""
    out = io.StringIO()
    node = root.parent / "runtime" / "node" / "bin" / "node"
    pinned = openclaw_pin.pin(version, CommandRunner(root, out), out, root=root, node=lambda _: node)
    return pinned, out.getvalue()


def test_an_upgrade_rewrites_the_lock_and_every_pin_and_they_agree(checkout: Path, tmp_path: Path) -> None:
    # Given a checkout pinned to the current OpenClaw
    before = snapshot(checkout)

    # When it is pinned to a newer release
    pinned, out = pin(checkout)

    # Then npm resolved the lockfile only (no install, no scripts) in a folder outside the checkout, on the
    # local runtime's Node
    (call,) = npm_calls(tmp_path)
    args = list(call["args"])  # type: ignore[call-overload]
    assert args[:2] == ["install", "--prefix"]
    assert {"--package-lock-only", "--ignore-scripts", "--save-exact", f"openclaw@{NEWER}"} <= set(args)
    assert not Path(args[2]).is_relative_to(checkout)
    assert str(call["path"]).startswith(str(tmp_path / "runtime" / "node" / "bin") + os.pathsep)
    # and every tracked pin changed, and they all name the new version (what test_openclaw_lock.py checks)
    assert pinned == openclaw_pin.Pinned(NEWER, PINNED_FILES)
    after = snapshot(checkout)
    assert [name for name in PINNED_FILES if after[name] != before[name]] == PINNED_FILES
    package = json.loads(after["bridge/openclaw/package.json"])
    lock = json.loads(after["bridge/openclaw/package-lock.json"])
    assert package["dependencies"] == lock["packages"][""]["dependencies"] == {"openclaw": NEWER}
    assert lock["packages"]["node_modules/openclaw"]["version"] == NEWER
    assert load_template(checkout / "template.yaml")["Parameters"]["OpenClawVersion"]["Default"] == NEWER
    assert re.search(rf"^OPENCLAW_VERSION := {re.escape(NEWER)}$", after["Makefile"].decode(), re.MULTILINE)
    assert f"\nARG OPENCLAW_VERSION={NEWER}\n" in after["bridge/Dockerfile"].decode()
    # and nothing else in those files moved (only the version strings differ)
    for name in ("Makefile", "bridge/Dockerfile", "template.yaml"):
        assert after[name].decode() == before[name].decode().replace(PINNED, NEWER, 1)
    # and the person saw the progress and what changed; no temporary file is left beside them
    assert f"==> resolving openclaw@{NEWER} with npm (was {PINNED}" in out
    assert f"pinned OpenClaw {NEWER} (was {PINNED}) in {', '.join(PINNED_FILES)}" in out
    assert not list(checkout.rglob("*.pin"))


def test_the_pinned_version_again_runs_nothing_and_changes_nothing(checkout: Path, tmp_path: Path) -> None:
    # Given a checkout pinned to a version
    before = snapshot(checkout)

    # When it is pinned to that same version
    pinned, out = pin(checkout, PINNED)

    # Then npm never ran and no file changed
    assert pinned == openclaw_pin.Pinned(PINNED, [])
    assert npm_calls(tmp_path) == []
    assert snapshot(checkout) == before
    assert f"OpenClaw {PINNED} is pinned already: no file changed" in out


def test_npm_failing_changes_no_file(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a registry that does not have the version
    before = snapshot(checkout)
    monkeypatch.setenv(NPM_EXIT_ENV, "1")

    # When the checkout is pinned to it
    with pytest.raises(Failure) as failed:
        pin(checkout)

    # Then the error says npm failed and nothing changed, and indeed no file did
    assert str(failed.value).startswith(f"npm could not resolve openclaw@{NEWER} (exit 1)")
    assert str(failed.value).endswith("no file was changed")
    assert snapshot(checkout) == before


def test_a_lock_resolving_another_version_changes_no_file(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given npm that resolves something other than what was asked
    before = snapshot(checkout)
    monkeypatch.setenv(NPM_RESOLVES_ENV, "2026.10.0")

    # When the checkout is pinned
    with pytest.raises(Failure) as failed:
        pin(checkout)

    # Then it is refused: no file changed
    assert f"npm resolved openclaw 2026.10.0 for {{'openclaw': '{NEWER}'}}, not exactly {NEWER}" in str(
        failed.value
    )
    assert snapshot(checkout) == before


def test_a_pin_that_no_longer_agrees_changes_no_file(checkout: Path, tmp_path: Path) -> None:
    # Given a Makefile someone edited to another version
    makefile = checkout / "Makefile"
    makefile.write_text(
        makefile.read_text().replace(f"OPENCLAW_VERSION := {PINNED}", "OPENCLAW_VERSION := 1")
    )
    before = snapshot(checkout)

    # When the checkout is pinned
    with pytest.raises(Failure) as failed:
        pin(checkout)

    # Then it names the file, npm never ran and nothing changed
    assert f"Makefile should pin OpenClaw {PINNED} once, as the lockfile does (found ['1'])" in str(
        failed.value
    )
    assert npm_calls(tmp_path) == []
    assert snapshot(checkout) == before


def test_a_rename_failing_midway_puts_back_the_files_already_replaced(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a disk that refuses the third rename (full, or a file made read-only meanwhile)
    before = snapshot(checkout)
    real_replace = os.replace
    renames: list[str] = []

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        renames.append(str(target))
        if len(renames) == 3:
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(openclaw_pin.os, "replace", replace)

    # When the checkout is pinned
    with pytest.raises(Failure) as failed:
        pin(checkout)

    # Then the two files already replaced were put back: every file is as it was, no temporary is left
    assert "No space left on device" in str(failed.value) and "no file was changed" in str(failed.value)
    assert snapshot(checkout) == before
    assert not list(checkout.rglob("*.pin"))


@pytest.mark.parametrize("version", ["latest", "2026.10", "file:../evil", "2026.10.1 --global"])
def test_what_is_not_a_release_version_is_refused_before_npm(
    checkout: Path, tmp_path: Path, version: str
) -> None:
    # Given / When a version that is not a release number is asked for
    with pytest.raises(UsageError, match="is not an OpenClaw release version"):
        pin(checkout, version)

    # Then npm never ran
    assert npm_calls(tmp_path) == []


def test_the_command_line_without_a_version_prints_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    # Given / When the script runs without a version
    code = openclaw_pin.main([])

    # Then it prints its usage and exits 2
    assert code == 2
    assert "make openclaw-pin OPENCLAW_VERSION=" in capsys.readouterr().err
