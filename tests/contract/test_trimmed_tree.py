"""The image's trimmed OpenClaw (bridge/openclaw/trim.sh on the locked tree) still boots and answers.

The tree is rebuilt from the local install as the image's build makes /opt/openclaw (local/image_tree.py),
then the real gateway is started from it with our headless config and the offline model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from local.image_tree import copy_installed, trim
from local.offline_model import OfflineModelServer
from local.runtime import runtime
from tests.contract.conftest import RunningGateway, chat, open_operator, require_runtime, start_gateway
from tests.contract.test_gateway_smoke import session_key

pytestmark = pytest.mark.contract

# The conditions Node itself resolves in a package's "exports" (others, such as "types" or "source", name
# files only tools read).
NODE_CONDITIONS = frozenset({"node", "import", "require", "default", "module-sync", "node-addons"})
REMOVED_PACKAGES = (
    "node_modules/@trycua/cua-driver-",
    "node_modules/playwright-core/",
    "node_modules/typescript/",
    "node_modules/openclaw/node_modules/chrome-devtools-mcp/",
)
"""The packages trim.sh removes whole (features a headless task cannot use: desktop control, a browser,
TypeScript compilation), each loaded by OpenClaw only when its feature is used."""


def _targets(spec: object) -> Iterator[str]:
    """The files a package.json "main"/"bin"/"exports" value points Node at."""
    if isinstance(spec, str):
        yield spec
    elif isinstance(spec, dict):
        for key, value in spec.items():
            if key.startswith(".") or key in NODE_CONDITIONS:
                yield from _targets(value)


def entry_points(tree: Path) -> set[str]:
    """Every file Node may load as a package's entry point, relative to tree, that exists there."""
    found = set()
    for manifest in (tree / "node_modules").rglob("package.json"):
        try:
            package = json.loads(manifest.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(package, dict):
            continue
        for key in ("main", "bin", "exports"):
            for target in _targets(package.get(key)):
                path = manifest.parent / target
                if "*" not in target and path.is_file():
                    found.add(str(path.relative_to(tree)))
    return found


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the untrimmed copy, the trimmed copy) of the locked install, as the image's build makes it."""
    require_runtime()
    base = tmp_path_factory.mktemp("image-tree")
    full = copy_installed(runtime(), base / "full")
    small = copy_installed(runtime(), base / "trimmed")
    trim(small)
    return full, small


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trimmed_gateway(
    trimmed: tuple[Path, Path], offline_model: OfflineModelServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningGateway]:
    """The real gateway started from the trimmed tree."""
    entry = trimmed[1] / "node_modules" / "openclaw" / "openclaw.mjs"
    running = await start_gateway(tmp_path_factory.mktemp("trimmed-home"), offline_model.url, entry=entry)
    yield running
    await running.stop()


def test_trimming_keeps_every_entry_point_and_what_openclaw_reads(trimmed: tuple[Path, Path]) -> None:
    # Given the locked tree before and after trim.sh
    full, small = trimmed
    openclaw = small / "node_modules" / "openclaw"

    # Then every file Node may load as a package entry point is still there, but those of the packages
    # removed on purpose, which are gone whole
    lost = sorted(entry_points(full) - entry_points(small))
    assert [entry for entry in lost if not entry.startswith(REMOVED_PACKAGES)] == []
    installed = [prefix for prefix in REMOVED_PACKAGES if list(full.glob(prefix.rstrip("/") + "*"))]
    assert installed == list(REMOVED_PACKAGES)
    assert [prefix for prefix in REMOVED_PACKAGES if list(small.glob(prefix.rstrip("/") + "*"))] == []
    # And the workspace templates and OpenClaw's skills (Markdown it reads) are kept, the rest of the docs,
    # the Control UI and the source maps are gone
    assert (openclaw / "docs" / "reference" / "templates" / "AGENTS.md").is_file()
    assert sorted(p.name for p in (openclaw / "docs").iterdir()) == ["reference"]
    assert list((openclaw / "skills").rglob("SKILL.md"))
    assert not (openclaw / "dist" / "control-ui").exists()
    assert not list(small.rglob("*.map"))
    # And the install it was copied from is untouched (the copy is hard links; trim.sh only deletes)
    assert (runtime().entry.parent / "docs" / "docs.json").is_file()


async def test_the_trimmed_gateway_answers_and_writes_into_the_workspace(
    trimmed_gateway: RunningGateway,
) -> None:
    # Given the gateway booted from the trimmed tree
    ws, hello = await open_operator(trimmed_gateway.url, trimmed_gateway.token, caps=["tool-events"])
    key = session_key()

    # When a message is sent and a file is asked for
    try:
        answered = await chat(ws, key, "hello trimmed")
        created = await chat(ws, key, "create file trimmed.md with the text still whole")
    finally:
        await ws.close()

    # Then it speaks protocol v4, the offline model's answer streams back, and its write tool works
    assert hello["protocol"] == 4
    assert answered.state == "final"
    assert answered.text.endswith("You said: hello trimmed")
    assert created.text == "(offline model) Created trimmed.md."
    assert (trimmed_gateway.workspace / "trimmed.md").read_text() == "still whole"
