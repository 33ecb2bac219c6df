"""Backup: upload what changed since the last manifest, in three steps.

`plan_backup` decides, from the scanned files, the known manifest and its signatures, and the limits,
which files to upload and which are unchanged (no request, no disk access); `upload` hashes and uploads
the changed files in parallel and returns one outcome per file; `commit` settles the new manifest (a
failed upload keeps the previous entry, a vanished file is deleted), deletes the vanished files' objects
and writes the manifest last, so a backup that dies halfway leaves the previous consistent set current.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bridge.state_sync.databases import snapshot
from bridge.state_sync.inventory import LocalFile, Signature, SyncLimits, apply_limits
from bridge.state_sync.ledger import Ledger
from bridge.state_sync.manifest import Entry
from bridge.state_sync.roots import root_of
from bridge.state_sync.store import AWS_ERRORS, CHUNK, BackupStore, aws_error
from serverless_openclaw.observability import logger

_INLINE_BYTES = 8 * 1024 * 1024
"""Files up to this size are read once into memory, so the bytes hashed are exactly the bytes uploaded."""


@dataclass(frozen=True)
class BackupReport:
    """What a backup changed in S3; `failed` files keep their previous backup and are retried next time."""

    uploaded: int
    deleted: int
    unchanged: int
    bytes: int
    requests: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BackupPlan:
    """What a backup does with each file, decided before any request."""

    known: Mapping[str, Entry]
    """The manifest the plan compares with."""
    local: dict[str, LocalFile]
    """The files to back up: eligible and within the limits."""
    changed: list[LocalFile]
    """Those new or changed since `known`: hashed, and uploaded unless their content is already stored."""
    over_limit: set[str]
    """Keys left out by the limits: their previous backup, if any, is kept."""
    warnings: list[str]


@dataclass(frozen=True)
class Outcome:
    """What backing up one changed file did: its new entry, or why it has none."""

    key: str
    entry: Entry | None = None
    uploaded: bool = False
    bytes: int = 0
    requests: int = 0
    error: str | None = None


@dataclass
class Settlement:
    """The manifest a backup leaves, what it sent, and what failed."""

    files: dict[str, Entry] = field(default_factory=dict)
    signatures: dict[str, Signature] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    """Known keys whose file is gone: their objects are deleted."""
    failed: list[str] = field(default_factory=list)
    uploaded: int = 0
    deleted: int = 0
    unchanged: int = 0
    bytes: int = 0
    requests: int = 0
    written: bool = False
    """Whether the manifest in S3 now lists `files` (False if writing it failed)."""

    def take(self, item: LocalFile, outcome: Outcome, previous: Entry | None) -> None:
        """Count one changed file's outcome; a failed one keeps its previous entry, if it had one."""
        self.requests += outcome.requests
        if outcome.entry is None:
            self.failed.append(f"{item.key}: {outcome.error}")
            if previous is not None:
                self.files[item.key] = previous  # the previous backup stays; the next backup retries
            return
        self.files[item.key], self.signatures[item.key] = outcome.entry, item.signature
        if outcome.uploaded:
            self.uploaded, self.bytes = self.uploaded + 1, self.bytes + outcome.bytes
        else:
            self.unchanged += 1


def plan_backup(
    scanned: dict[str, LocalFile],
    known: Mapping[str, Entry],
    signatures: Mapping[str, Signature],
    limits: SyncLimits,
) -> BackupPlan:
    """Apply the limits, then pick the files whose signature differs from the known one (or that are new)."""
    local, over_limit, warnings = apply_limits(scanned, limits)
    changed = [f for f in local.values() if signatures.get(f.key) != f.signature or f.key not in known]
    return BackupPlan(known, local, changed, over_limit, warnings)


def upload(store: BackupStore, plan: BackupPlan, workers: int) -> list[Outcome]:
    """Back up every changed file, `workers` at a time; one outcome per file, in the plan's order."""
    with (
        tempfile.TemporaryDirectory(prefix="openclaw-snapshot-") as scratch,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        return list(pool.map(lambda f: _back_up_one(store, f, plan.known.get(f.key), scratch), plan.changed))


def settle(
    plan: BackupPlan, outcomes: Sequence[Outcome], unrestored: Collection[str], present_roots: Collection[str]
) -> Settlement:
    """The manifest after these outcomes: no request, no disk access.

    An unchanged file keeps its entry. A known file with no local file is kept if its root is not here
    (not synced here, or its folder is missing), if restore has not put it on disk, or if the limits left
    it out; otherwise it is gone.
    """
    settled = Settlement(unchanged=len(plan.local) - len(plan.changed))
    by_key = {o.key: o for o in outcomes}
    for key, item in plan.local.items():
        outcome = by_key.get(key)
        if outcome is None:
            settled.files[key], settled.signatures[key] = plan.known[key], item.signature
        else:
            settled.take(item, outcome, plan.known.get(key))
    for key, entry in plan.known.items():
        if key in settled.files:
            continue
        if root_of(key) not in present_roots or key in unrestored or key in plan.over_limit:
            settled.files[key] = entry
        else:
            settled.gone.add(key)
    return settled


def commit(
    store: BackupStore,
    ledger: Ledger,
    plan: BackupPlan,
    outcomes: Sequence[Outcome],
    present_roots: Collection[str],
) -> Settlement:
    """Settle the new manifest, delete the objects of gone files, then write the manifest if it changed.

    The ledger takes the new manifest only once it is written; a delete that fails is retried next time.
    """
    settled = settle(plan, outcomes, ledger.unrestored, present_roots)
    ledger.pending_deletes |= settled.gone
    ledger.pending_deletes -= set(settled.files)
    deletion = store.delete(sorted(ledger.pending_deletes))
    ledger.pending_deletes -= deletion.deleted
    settled.deleted = len(deletion.deleted)
    settled.requests += deletion.requests
    settled.failed += deletion.failures
    if settled.files != ledger.known:
        try:
            settled.requests += 1
            store.write_manifest(settled.files)
        except AWS_ERRORS as exc:
            settled.failed.append(f"manifest.json: {aws_error(exc)}")
            logger.error("manifest not written; the previous backup stays current", error=aws_error(exc))
            return settled
    settled.written = True
    ledger.known = settled.files
    ledger.signatures = {
        **{k: v for k, v in ledger.signatures.items() if k in settled.files},
        **settled.signatures,
    }
    ledger.unrestored &= set(settled.files) - set(plan.local)
    return settled


def _back_up_one(store: BackupStore, item: LocalFile, previous: Entry | None, scratch: str) -> Outcome:
    """Hash one changed file (a snapshot for a database) and upload it unless its content is known."""
    try:
        if item.sqlite:
            copy = Path(scratch) / f"{secrets.token_hex(8)}.sqlite"
            if snapshot(item.path, copy):
                try:
                    return _upload(store, item, previous, copy, stable=True)
                finally:
                    copy.unlink(missing_ok=True)
        return _upload(store, item, previous, item.path, stable=False)
    except FileNotFoundError:
        return Outcome(item.key, error="it disappeared while being backed up")
    except (OSError, sqlite3.Error) as exc:
        return Outcome(item.key, error=f"it could not be read ({exc})")
    except AWS_ERRORS as exc:
        return Outcome(item.key, requests=1, error=f"upload failed ({aws_error(exc)})")


def _upload(
    store: BackupStore, item: LocalFile, previous: Entry | None, source: Path, *, stable: bool
) -> Outcome:
    """Upload `source` as the item's content, unless the stored object already has it.

    A `stable` source (a snapshot) cannot change while it is read; a live file read in pieces can, and
    is then not recorded.
    """
    with open(source, "rb") as handle:
        data, size, sha = _read(handle)
        entry = Entry(size, item.mtime_ns, sha, None, item.mode)
        if previous is not None and (previous.size, previous.sha256) == (size, sha):
            # Touched, not changed: keep the stored object, record the new mtime.
            return Outcome(item.key, entry=entry.with_version(previous.version_id))
        if data is None:
            handle.seek(0)
        version_id = store.put(item.key, data if data is not None else handle)
    if data is None and not stable:
        after = os.lstat(source)
        if (after.st_size, after.st_mtime_ns) != item.signature[:2]:
            # The object may not match the hash; the manifest keeps the previous version instead.
            return Outcome(item.key, requests=1, error="it changed while being backed up")
    return Outcome(item.key, entry=entry.with_version(version_id), uploaded=True, bytes=size, requests=1)


def _read(handle: IO[bytes]) -> tuple[bytes | None, int, str]:
    """(content, size, sha256) of a small file read whole; a large one is hashed in pieces (content None)."""
    size = os.fstat(handle.fileno()).st_size
    if size > _INLINE_BYTES:
        digest = hashlib.sha256()
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
        return None, size, digest.hexdigest()
    data = handle.read()
    return data, len(data), hashlib.sha256(data).hexdigest()
