"""Which local files a backup covers: every eligible file of every root, within the size limits.

Change detection compares signatures rather than hashes, so an unchanged tree costs a walk and no reads:
a file's (size, mtime_ns), plus its WAL's (size, mtime_ns) for a database whose new rows only touch the
WAL.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bridge.state_sync.databases import is_database, is_side_file
from bridge.state_sync.paths import check_relative
from bridge.state_sync.roots import Roots, SyncRoot
from bridge.state_sync.store import MAX_KEY_BYTES

MiB = 1024 * 1024
GiB = 1024 * MiB
NO_FILE = -1
"""The size and mtime in a signature of a WAL that is not there."""

Signature = tuple[int, int, int, int]
"""What change detection compares: (size, mtime_ns) of a file, plus (size, mtime_ns) of a database's WAL."""


@dataclass(frozen=True)
class SyncLimits:
    """How much is backed up and how many S3 transfers run at once."""

    max_file_bytes: int = 100 * MiB
    max_total_bytes: int = 2 * GiB
    parallelism: int = 16

    def workers(self, transfers: int) -> int:
        """How many threads to run that many transfers with."""
        return max(1, min(self.parallelism, transfers))


@dataclass(frozen=True)
class LocalFile:
    """A file eligible for backup, as the scan found it."""

    key: str
    root: SyncRoot
    path: Path
    size: int
    mtime_ns: int
    mode: int
    signature: Signature
    sqlite: bool


def scan(roots: Roots, prefix: str) -> tuple[dict[str, LocalFile], list[str]]:
    """Every file of every root that is eligible for backup, by key, and a warning for each one that is not.

    `prefix` is the S3 prefix the keys go under: a key too long for S3 is not eligible.
    """
    found: dict[str, LocalFile] = {}
    warnings: list[str] = []
    for root in roots:
        if not root.present():
            continue
        files = dict(roots.files(root))
        for rel, info in files.items():
            key = f"{root.name}/{rel}"
            if root.name == "state" and is_side_file(rel, files):
                continue  # folded into its database's snapshot
            reason = _refusal(rel, prefix + key)
            if reason is None:
                found[key] = _local_file(root, rel, info)
            else:
                warnings.append(f"{display(key)} was not backed up: {reason}.")
    return found, warnings


def apply_limits(
    local: dict[str, LocalFile], limits: SyncLimits
) -> tuple[dict[str, LocalFile], set[str], list[str]]:
    """Drop files over the per-file limit, then the largest ones until the total fits.

    Returns the files kept, the keys dropped and a warning for each of them.
    """
    kept: dict[str, LocalFile] = {}
    dropped: set[str] = set()
    warnings: list[str] = []
    for key, item in local.items():
        if item.size > limits.max_file_bytes:
            warnings.append(
                f"{display(key)} ({human(item.size)}) is larger than the "
                f"{human(limits.max_file_bytes)} per-file limit and was not backed up."
            )
            dropped.add(key)
        else:
            kept[key] = item
    total = sum(item.size for item in kept.values())
    for item in sorted(kept.values(), key=lambda f: (-f.size, f.key)):
        if total <= limits.max_total_bytes:
            break
        warnings.append(
            f"{display(item.key)} ({human(item.size)}) was not backed up: your files together are "
            f"larger than the {human(limits.max_total_bytes)} backup limit."
        )
        dropped.add(item.key)
        del kept[item.key]
        total -= item.size
    return kept, dropped, warnings


def display(key: str) -> str:
    """A key as the user's warnings quote it; bytes of a name that are not UTF-8 show as U+FFFD, so the
    warning can always be logged and sent."""
    readable = key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return f"'{readable}'"


def human(size: int) -> str:
    """A size in bytes as the user's warnings write it: '2.0 KiB', '100 MiB', '1000 bytes'."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


def _refusal(rel: str, object_key: str) -> str | None:
    """Why the file at `rel` cannot be stored as `object_key`; None if it can."""
    try:
        check_relative(rel)
        if len(object_key.encode()) > MAX_KEY_BYTES:
            raise ValueError("its path is too long")
    except UnicodeEncodeError:  # a ValueError too, whose message would only say "utf-8"
        return "its name is not valid UTF-8"
    except ValueError as exc:
        reason: str = exc.args[0]
        return reason
    return None


def _local_file(root: SyncRoot, rel: str, info: os.stat_result) -> LocalFile:
    """The file with its signature; a database counts its WAL too, in size and in signature."""
    sqlite_db = is_database(root, rel.rsplit("/", 1)[-1])
    wal = _wal(root.path / (rel + "-wal")) if sqlite_db else None
    wal_size, wal_mtime = (wal.st_size, wal.st_mtime_ns) if wal is not None else (NO_FILE, NO_FILE)
    return LocalFile(
        key=f"{root.name}/{rel}",
        root=root,
        path=root.path / rel,
        size=info.st_size + (wal.st_size if wal is not None else 0),
        mtime_ns=info.st_mtime_ns,
        mode=stat.S_IMODE(info.st_mode),
        signature=(info.st_size, info.st_mtime_ns, wal_size, wal_mtime),
        sqlite=sqlite_db,
    )


def _wal(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
