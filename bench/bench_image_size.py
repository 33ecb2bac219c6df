"""The bridge image's OpenClaw tree (/opt/openclaw) before and after bridge/openclaw/trim.sh.

The image's `npm ci` of bridge/openclaw is rebuilt from the local install of the same lockfile (hard links,
local/image_tree.py), measured as `du -sb` does and as `tar | gzip -6` compresses it (about what a
registry layer weighs), then trimmed by the image's own script and measured again in the same run.
Prints figures; never fails on size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local.image_tree import ImageTreeError, TreeSize, copy_installed, measure, trim  # noqa: E402
from local.runtime import runtime  # noqa: E402

MB = 1_000_000


def _row(label: str, size: TreeSize) -> str:
    return f"{label:<26} {size.bytes / MB:8.1f} MB on disk {size.gzip_bytes / MB:8.1f} MB gzip -6"


def main() -> None:
    rt = runtime()
    print(f"OpenClaw {rt.version} from {rt.root} (npm ci of bridge/openclaw/package-lock.json)")
    with tempfile.TemporaryDirectory(prefix="image-tree-") as scratch:
        full = copy_installed(rt, Path(scratch) / "full")
        before = measure(full)
        print(_row("/opt/openclaw as npm ci", before), flush=True)
        small = copy_installed(rt, Path(scratch) / "trimmed")
        started = time.perf_counter()
        trim(small)
        took = time.perf_counter() - started
        after = measure(small)
    print(_row("after trim.sh", after))
    saved = TreeSize(before.bytes - after.bytes, before.gzip_bytes - after.gzip_bytes)
    print(_row("saved", saved))
    print(
        f"ratio after/before: {after.bytes / before.bytes:.2f} on disk, "
        f"{after.gzip_bytes / before.gzip_bytes:.2f} compressed; trim.sh took {took:.1f} s"
    )


if __name__ == "__main__":
    try:
        main()
    except ImageTreeError as exc:
        sys.exit(f"error: {exc}")
