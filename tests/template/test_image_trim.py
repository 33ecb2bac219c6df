"""bridge/openclaw/trim.sh, which the image's build runs on /opt/openclaw: what it removes and what it keeps.

On a small tree laid out like the locked install; tests/contract/test_trimmed_tree.py boots the real
gateway on the real trimmed tree.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from local.image_tree import TRIM_SCRIPT

ROOT = Path(__file__).resolve().parents[2]

KEPT = [
    "package.json",
    "node_modules/openclaw/openclaw.mjs",
    "node_modules/openclaw/README.md",
    "node_modules/openclaw/dist/index.js",
    "node_modules/openclaw/dist/extensions/memory-core/skills/recall/SKILL.md",
    "node_modules/openclaw/skills/notes/SKILL.md",
    "node_modules/openclaw/docs/reference/templates/AGENTS.md",
    "node_modules/openclaw/node_modules/undici/index.js",
    "node_modules/@trycua/cua-driver/dist/index.js",
    "node_modules/zod/package.json",
    "node_modules/zod/index.js",
    "node_modules/zod/LICENSE",
    "node_modules/zod/notes.md",
    "node_modules/pi-tui/native/linux/prebuilds/linux-x64/console.node",
    "node_modules/@scope/native-linux-x64-gnu/native.node",
]
REMOVED = [
    "node_modules/openclaw/docs/docs.json",
    "node_modules/openclaw/docs/index.md",
    "node_modules/openclaw/docs/reference/config.md",
    "node_modules/openclaw/docs/providers/bedrock.md",
    "node_modules/openclaw/dist/control-ui/index.html",
    "node_modules/openclaw/dist/index.js.map",
    "node_modules/openclaw/dist/index.d.ts",
    "node_modules/openclaw/dist/plugin-sdk/.tsbuildinfo",
    "node_modules/openclaw/node_modules/chrome-devtools-mcp/README.md",
    "node_modules/zod/README.md",
    "node_modules/zod/CHANGELOG.md",
    "node_modules/zod/index.d.cts",
    "node_modules/zod/src/index.ts",
    "node_modules/zod/src/types.mts",
    "node_modules/pi-tui/native/darwin/prebuilds/darwin-arm64/mods.node",
    "node_modules/pi-tui/native/win32/prebuilds/win32-x64/console.node",
    "node_modules/koffi/build/android_arm64/koffi.node",
    "node_modules/koffi/build/freebsd_x64/koffi.node",
    "node_modules/@trycua/cua-driver-linux-x64-gnu/cua-driver",
    "node_modules/@trycua/cua-driver-linux-arm64-gnu/cua-driver",
    "node_modules/playwright-core/index.js",
    "node_modules/typescript/lib/typescript.js",
    "node_modules/.bin/tsc",
    "node_modules/openclaw/node_modules/chrome-devtools-mcp/build/src/index.js",
    "node_modules/openclaw/node_modules/.bin/chrome-devtools-mcp",
]


def _is_glibc() -> bool:
    return subprocess.run(["getconf", "GNU_LIBC_VERSION"], capture_output=True, check=False).returncode == 0


def test_trim_removes_what_the_gateway_never_reads_and_keeps_the_rest(tmp_path: Path) -> None:
    # Given a tree laid out like the locked install
    musl = "node_modules/@koromix/koffi-linux-x64/musl_x64/koffi.node"
    for relative in [*KEPT, *REMOVED, musl]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(relative)

    # When the image's trim script runs on it
    result = subprocess.run(
        ["sh", str(TRIM_SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )

    # Then it succeeds quietly, removing docs (but the templates), the Control UI, maps, declarations,
    # TypeScript, read-me files of dependencies, other systems' binaries and the packages of features a
    # headless task cannot use (desktop control, a browser, TypeScript); every other file is as it was
    assert (result.returncode, result.stderr) == (0, "")
    assert [relative for relative in REMOVED if (tmp_path / relative).exists()] == []
    assert [relative for relative in KEPT if (tmp_path / relative).read_text() != relative] == []
    # (musl builds go on a glibc system such as the image's Debian)
    assert (tmp_path / musl).exists() != _is_glibc()


def test_trim_refuses_a_folder_without_openclaw(tmp_path: Path) -> None:
    # Given a folder where nothing was installed
    # When the trim script is pointed at it
    result = subprocess.run(
        ["sh", str(TRIM_SCRIPT), str(tmp_path)], capture_output=True, text=True, check=False
    )

    # Then it stops with a message saying what is missing, deleting nothing
    assert result.returncode == 2
    assert "no OpenClaw in" in result.stderr and "npm ci" in result.stderr


@pytest.mark.parametrize("stage_line", ["sh trim.sh /opt/openclaw", "rm trim.sh"])
def test_the_image_trims_its_openclaw_in_the_same_layer_it_installs_it(stage_line: str) -> None:
    # Given the Dockerfile's OpenClaw stage
    dockerfile = (ROOT / "bridge" / "Dockerfile").read_text()
    install = re.search(r"^RUN npm ci .*?(?=^\S)", dockerfile, re.MULTILINE | re.DOTALL)

    # Then the trimming is in the install's RUN (a later layer would not make the image smaller), the
    # script comes from the build context, and it is not left in the image
    assert install and stage_line in install.group(0)
    assert "bridge/openclaw/trim.sh" in dockerfile
    assert "!bridge/openclaw/trim.sh" in (ROOT / ".dockerignore").read_text().splitlines()
