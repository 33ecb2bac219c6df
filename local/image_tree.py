"""The OpenClaw tree the bridge image ships (/opt/openclaw), rebuilt beside the locked local install.

The image runs `npm ci` of bridge/openclaw and then `bridge/openclaw/trim.sh`; the local install is the same
`npm ci` (local/runtime.py), so a copy of it trimmed by the same script is the image's tree, without an
image builder. The copy is made of hard links: trim.sh only deletes, so the install itself is untouched.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from local.runtime import PROJECT, PROJECT_FILES, Runtime

TRIM_SCRIPT = PROJECT / "trim.sh"


class ImageTreeError(Exception):
    """The tree could not be copied, trimmed or measured; the message says why."""


@dataclass(frozen=True)
class TreeSize:
    """A tree's size as `du -sb` counts it, and as `tar | gzip -6` (a registry layer) compresses it."""

    bytes: int
    gzip_bytes: int


def copy_installed(rt: Runtime, dest: Path) -> Path:
    """What the image's `npm ci` leaves in /opt/openclaw (Node comes from its base image), hard-linked."""
    if not rt.installed:
        raise ImageTreeError(
            f"the pinned OpenClaw runtime is not installed in {rt.root}: run `make openclaw`"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        shutil.copyfile(rt.root / name, dest / name)
    _run(["cp", "-al", str(rt.root / "node_modules"), str(dest / "node_modules")], "copying the install")
    return dest


def trim(tree: Path) -> None:
    """Run the image's trim script on a tree (as bridge/Dockerfile does on /opt/openclaw)."""
    _run(["sh", str(TRIM_SCRIPT), str(tree)], "trim.sh")


def measure(tree: Path) -> TreeSize:
    """The tree's size on disk (`du -sb`) and compressed (`tar -c | gzip -6`, counted in bytes)."""
    du = _run(["du", "-sb", str(tree)], "du")
    compressed = 0
    with (
        subprocess.Popen(["tar", "-cf", "-", "-C", str(tree), "."], stdout=subprocess.PIPE) as tar,
        subprocess.Popen(["gzip", "-6"], stdin=tar.stdout, stdout=subprocess.PIPE) as gzip,
    ):
        if tar.stdout is None or gzip.stdout is None:
            raise ImageTreeError("tar | gzip: no pipe")
        tar.stdout.close()  # gzip holds it now; tar gets SIGPIPE if gzip dies
        # Counted as it streams: the compressed tree is hundreds of MB.
        while chunk := gzip.stdout.read(1 << 20):
            compressed += len(chunk)
    if tar.returncode != 0 or gzip.returncode != 0:
        raise ImageTreeError(f"tar | gzip of {tree} failed (exit {tar.returncode}, {gzip.returncode})")
    return TreeSize(bytes=int(du.split()[0]), gzip_bytes=compressed)


def _run(command: list[str], what: str) -> str:
    """Run a command; its output, or ImageTreeError with its error output."""
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageTreeError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    return result.stdout
