"""Restore: make the local roots equal the manifest, in four steps.

`plan_restore` reads the manifest's entries and decides where each one goes (refusing those that would
land outside their root); `remove_strays` deletes local files the manifest does not list; `fetch`
downloads the planned entries in parallel, each verified and renamed into place; `adopt` records the
outcome in the ledger so the next backup compares with it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from bridge.state_sync.databases import SIDE_FILES, is_database
from bridge.state_sync.inventory import NO_FILE, Signature
from bridge.state_sync.ledger import Ledger
from bridge.state_sync.manifest import Entry
from bridge.state_sync.paths import Refused, clear_target, open_dirs
from bridge.state_sync.roots import Roots, SyncRoot, root_of
from bridge.state_sync.store import AWS_ERRORS, CHUNK, BackupStore, aws_error
from serverless_openclaw.observability import logger

if TYPE_CHECKING:
    from botocore.response import StreamingBody


@dataclass(frozen=True)
class RestoreReport:
    """What a restore put on disk, and every manifest entry it refused or could not fetch (with why)."""

    files: int
    bytes: int
    seconds: float
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Placement:
    """Where one manifest entry is written: a relative path in a root."""

    root: SyncRoot
    rel: str
    entry: Entry


@dataclass(frozen=True)
class RestorePlan:
    """Every readable entry of the manifest, those to write in the roots being restored, and the refusals."""

    known: dict[str, Entry]
    placements: dict[str, Placement]
    refused: list[str]


@dataclass
class Fetched:
    """What the downloads put on disk, and why the others were not restored."""

    signatures: dict[str, Signature] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    skipped: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


class _Corrupt(Exception):
    """A downloaded object that does not match its manifest entry."""


def plan_restore(manifest: dict[str, Any], roots: Roots, targets: Collection[str]) -> RestorePlan:
    """Check each manifest entry and place those of the `targets` roots; no request, no disk access."""
    plan = RestorePlan({}, {}, [])
    for key, raw in manifest.items():
        try:
            entry = Entry.from_json(raw)
            root, rel = roots.locate(key)
        except (ValueError, Refused) as exc:
            plan.refused.append(f"{key!r}: refused ({exc})")
            continue
        plan.known[key] = entry
        if root is not None and rel is not None and root.name in targets:
            plan.placements[key] = Placement(root, rel, entry)
        # Entries of roots this bridge does not handle are carried over untouched.
    return plan


def remove_strays(root: SyncRoot, roots: Roots, wanted: Collection[str]) -> None:
    """Delete the root's regular files whose key is not `wanted`, except under excluded patterns."""
    if root.path.is_symlink():
        return
    removed = 0
    for rel, _info in roots.files(root):
        if f"{root.name}/{rel}" not in wanted:
            path = root.path / rel
            # A database's side files go with it: a stale WAL must never meet a new database.
            sides = SIDE_FILES if is_database(root, path.name) else ()
            for victim in (path, *(path.with_name(path.name + s) for s in sides)):
                with contextlib.suppress(FileNotFoundError):
                    victim.unlink()
            removed += 1
    if removed:
        logger.info("local files not in the backup removed", root=root.name, files=removed)


def fetch(store: BackupStore, placements: dict[str, Placement], workers: int) -> Fetched:
    """Download every placed entry, `workers` at a time; a failure skips that entry, not the restore."""
    fetched = Fetched()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda item: restore_one(store, *item), placements.items())
        for key, result in zip(placements, results, strict=True):
            if isinstance(result, str):
                fetched.skipped.append(f"{key!r}: {result}")
                fetched.failed.add(key)
                logger.warning("state entry not restored", key=key, reason=result)
            else:
                fetched.signatures[key] = result
                fetched.files += 1
                fetched.bytes += placements[key].entry.size
    return fetched


def adopt(
    ledger: Ledger,
    plan: RestorePlan,
    fetched: Fetched,
    targets: Collection[str],
    roots: Roots,
    *,
    partial: bool,
) -> None:
    """Record a restore of the `targets` roots: the manifest it read becomes the known one.

    A `partial` restore (some roots, after an earlier one) keeps what the ledger knew of the other roots.
    Entries of roots not restored yet, or not synced here, count as unrestored: no backup deletes them.
    """
    earlier_signatures: dict[str, Signature] = {}
    earlier_failures: set[str] = set()
    if partial:
        earlier_signatures = {k: v for k, v in ledger.signatures.items() if root_of(k) not in targets}
        earlier_failures = {k for k in ledger.unrestored if root_of(k) not in targets}
    not_restored_yet = {k for k in plan.known if root_of(k) not in ledger.restored_roots}
    handled_elsewhere = {k for k in plan.known if root_of(k) not in roots.names()}
    ledger.known = plan.known
    ledger.signatures = {**earlier_signatures, **fetched.signatures}
    ledger.unrestored = earlier_failures | fetched.failed | not_restored_yet | handled_elsewhere


def restore_one(store: BackupStore, key: str, placement: Placement) -> Signature | str:
    """Download one entry into place; its local signature, or why it was not restored."""
    *parents, name = placement.rel.split("/")
    try:
        dir_fd = open_dirs(placement.root.path, parents)
    except Refused as exc:
        return f"refused ({exc})"
    except OSError as exc:
        return f"could not create its folder ({exc.strerror})"
    try:
        clear_target(dir_fd, name)
        if is_database(placement.root, name):
            # A stale WAL replayed onto the restored snapshot would corrupt it.
            for suffix in SIDE_FILES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name + suffix, dir_fd=dir_fd)
        return _download_twice(store, key, placement.entry, dir_fd, name)
    except Refused as exc:
        return f"refused ({exc})"
    except OSError as exc:
        return f"could not be written ({exc.strerror})"
    finally:
        os.close(dir_fd)


def _download_twice(store: BackupStore, key: str, entry: Entry, dir_fd: int, name: str) -> Signature | str:
    """Download, retrying once if S3 failed or the bytes did not match; why the second try failed."""
    last_error = ""
    for _attempt in range(2):
        try:
            return _download(store, key, entry, dir_fd, name)
        except _Corrupt as exc:
            last_error = f"download did not match the manifest ({exc})"
        except AWS_ERRORS as exc:
            last_error = f"download failed ({aws_error(exc)})"
    return last_error


def _download(store: BackupStore, key: str, entry: Entry, dir_fd: int, name: str) -> Signature:
    """Fetch the entry's version into a temp file beside the target, verify it, fsync, rename."""
    temp = f".sync-{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as out:
            _receive(store.get(key, entry.version_id), out, entry)
            out.flush()
            os.fchmod(out.fileno(), entry.mode)
            os.utime(out.fileno(), ns=(entry.mtime_ns, entry.mtime_ns))
            os.fsync(out.fileno())
            info = os.fstat(out.fileno())
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    return (info.st_size, info.st_mtime_ns, NO_FILE, NO_FILE)


def _receive(body: StreamingBody, out: IO[bytes], entry: Entry) -> None:
    """Copy an S3 body into `out`, raising _Corrupt unless it is exactly the entry's bytes."""
    digest, received = hashlib.sha256(), 0
    try:
        for chunk in body.iter_chunks(CHUNK):
            received += len(chunk)
            if received > entry.size:
                raise _Corrupt(f"more than {entry.size} bytes")
            digest.update(chunk)
            out.write(chunk)
    finally:
        body.close()
    if received != entry.size:
        raise _Corrupt(f"{received} bytes instead of {entry.size}")
    if digest.hexdigest() != entry.sha256:
        raise _Corrupt("sha256 differs")
