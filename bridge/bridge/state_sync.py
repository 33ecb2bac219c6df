"""The agent's files and OpenClaw's state in S3: restored at boot, backed up incrementally while it runs.

S3 layout (DESIGN §4): `users/{userId}/{root}/{relative path}` for every file of a root ("workspace",
"state"), plus one `users/{userId}/manifest.json`, written last after every backup, that names each file
with its size, mtime, sha256, mode and the S3 version it was uploaded as. Restore trusts only the
manifest: it fetches exactly the versions it lists, so a backup that died halfway (objects uploaded, no
new manifest yet) still restores the previous consistent set.

The methods are synchronous and block on S3 and the disk; the bridge calls them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, TypeGuard
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from serverless_openclaw.observability import logger

MANIFEST_VERSION = 1
MiB = 1024 * 1024
GiB = 1024 * MiB

_INLINE_BYTES = 8 * MiB
"""Files up to this size are read once into memory, so the bytes hashed are exactly the bytes uploaded."""

_CHUNK = 1 * MiB
_DELETE_BATCH = 1000  # DeleteObjects' maximum
_MAX_KEY_BYTES = 1024  # S3's maximum key length
_SQLITE_SUFFIXES = (".sqlite", ".db")
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
_NO_FILE = -1
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

Signature = tuple[int, int, int, int]
"""What change detection compares: (size, mtime_ns) of a file, plus (size, mtime_ns) of a database's WAL."""


@dataclass(frozen=True)
class SyncRoot:
    """A local folder mirrored under `users/{userId}/{name}/`; `exclude` globs are relative to `path`."""

    name: str
    path: Path
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class SyncLimits:
    """How much is backed up and how many S3 transfers run at once."""

    max_file_bytes: int = 100 * MiB
    max_total_bytes: int = 2 * GiB
    parallelism: int = 16


@dataclass(frozen=True)
class RestoreReport:
    """What a restore put on disk, and every manifest entry it refused or could not fetch (with why)."""

    files: int
    bytes: int
    seconds: float
    skipped: list[str] = field(default_factory=list)


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


class ManifestError(Exception):
    """The manifest in S3 exists but cannot be read as one; nothing is restored over the local state."""


@dataclass(frozen=True)
class _Entry:
    """One file as the manifest records it."""

    size: int
    mtime_ns: int
    sha256: str
    version_id: str | None
    mode: int

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "size": self.size,
            "mtime": self.mtime_ns / 1e9,
            "mtimeNs": self.mtime_ns,
            "sha256": self.sha256,
            "mode": self.mode,
        }
        if self.version_id is not None:
            item["versionId"] = self.version_id
        return item

    @classmethod
    def from_json(cls, item: Any) -> _Entry:
        if not isinstance(item, dict):
            raise ValueError("entry is not an object")
        size, sha, mode = item.get("size"), item.get("sha256"), item.get("mode", 0o644)
        mtime_ns, mtime, version_id = item.get("mtimeNs"), item.get("mtime"), item.get("versionId")
        if not _is_int(size) or size < 0:
            raise ValueError("bad size")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError("bad sha256")
        if not _is_int(mtime_ns):
            if not isinstance(mtime, int | float) or isinstance(mtime, bool):
                raise ValueError("bad mtime")
            mtime_ns = int(mtime * 1e9)
        if not _is_int(mode):
            raise ValueError("bad mode")
        if version_id is not None and not isinstance(version_id, str):
            raise ValueError("bad versionId")
        return cls(size, mtime_ns, sha, version_id, mode & 0o777)


@dataclass(frozen=True)
class _LocalFile:
    key: str
    root: SyncRoot
    path: Path
    size: int
    mtime_ns: int
    mode: int
    signature: Signature
    sqlite: bool


@dataclass(frozen=True)
class _Outcome:
    key: str
    entry: _Entry | None = None
    uploaded: bool = False
    bytes: int = 0
    requests: int = 0
    error: str | None = None


def _root_of(key: str) -> str:
    """The root name a manifest key belongs to (its first path segment)."""
    return key.split("/", 1)[0]


class _Refused(Exception):
    """A manifest entry that must not be written where it points."""


class _Corrupt(Exception):
    """A downloaded object that does not match its manifest entry."""


class StateSync:
    """Restores a user's roots from S3 and backs them up incrementally against the last known manifest."""

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        user_id: str,
        roots: Sequence[SyncRoot],
        limits: SyncLimits = SyncLimits(),
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        if not user_id or "/" in user_id or "\x00" in user_id or user_id in (".", ".."):
            raise ValueError("user id cannot be used in an S3 key")
        names = [root.name for root in roots]
        if len(set(names)) != len(names) or any(_bad_segment(name) for name in names):
            raise ValueError(f"root names must be distinct single path segments: {names}")
        if limits.parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self._s3 = s3_client
        self._bucket = bucket
        self._prefix = f"users/{user_id}/"
        self._roots = {root.name: root for root in roots}
        self._excluders = {root.name: _Excluder(root.exclude) for root in roots}
        self._limits = limits
        self._on_warning = on_warning
        self._lock = threading.Lock()
        # The last manifest written or read, and the local signature each of its files had then.
        self._known: dict[str, _Entry] | None = None
        self._signatures: dict[str, Signature] = {}
        # Entries restore could not put on disk: carried into every manifest until the file reappears,
        # so a failed restore never turns into a deletion in S3.
        self._unrestored: set[str] = set()
        self._restored_roots: set[str] = set()
        self._pending_deletes: set[str] = set()
        self._over_limit: set[str] = set()
        self._warned: set[str] = set()

    @property
    def manifest_key(self) -> str:
        """The S3 key of this user's manifest."""
        return self._prefix + "manifest.json"

    # ------------------------------------------------------------------------------------- restore

    def restore(self, only: Collection[str] | None = None) -> RestoreReport:
        """Make the roots (all, or those named in `only`) equal the manifest in S3; no manifest: fresh user.

        Restoring root by root lets the bridge start OpenClaw on its state while the workspace is
        still coming down; until a root is restored, its entries count as unrestored, so a backup in
        between never deletes them.
        """
        with self._lock:
            started = time.monotonic()
            targets = set(self._roots) if only is None else set(only) & set(self._roots)
            partial = only is not None and self._known is not None
            manifest = self._read_manifest()
            self._restored_roots |= targets
            if manifest is None:
                if not partial:
                    self._known, self._signatures, self._unrestored = {}, {}, set()
                logger.info("no backup to restore: fresh user", roots=sorted(targets))
                return RestoreReport(0, 0, time.monotonic() - started)
            skipped: list[str] = []
            plan: dict[str, tuple[SyncRoot, str, _Entry]] = {}
            known: dict[str, _Entry] = {}
            for key, raw in manifest.items():
                try:
                    entry = _Entry.from_json(raw)
                    root, rel = self._locate(key)
                except (ValueError, _Refused) as exc:
                    skipped.append(f"{key!r}: refused ({exc})")
                    continue
                known[key] = entry
                if root is not None and rel is not None and root.name in targets:
                    plan[key] = (root, rel, entry)
                # Entries of roots this bridge does not handle are carried over untouched.
            for name in sorted(targets):
                self._remove_strays(self._roots[name], plan)
            signatures: dict[str, Signature] = {}
            failed: set[str] = set()
            files = size = 0
            with ThreadPoolExecutor(max_workers=self._workers(len(plan))) as pool:
                results = pool.map(lambda item: self._restore_one(item[0], *item[1]), plan.items())
                for key, result in zip(plan, results, strict=True):
                    if isinstance(result, str):
                        skipped.append(f"{key!r}: {result}")
                        failed.add(key)
                        logger.warning("state entry not restored", key=key, reason=result)
                    else:
                        signatures[key] = result
                        files += 1
                        size += plan[key][2].size
            earlier_signatures: dict[str, Signature] = {}
            earlier_failures: set[str] = set()
            if partial:
                earlier_signatures = {k: v for k, v in self._signatures.items() if _root_of(k) not in targets}
                earlier_failures = {k for k in self._unrestored if _root_of(k) not in targets}
            not_restored_yet = {k for k in known if _root_of(k) not in self._restored_roots}
            handled_elsewhere = {k for k in known if _root_of(k) not in self._roots}
            self._known = known
            self._signatures = {**earlier_signatures, **signatures}
            self._unrestored = earlier_failures | failed | not_restored_yet | handled_elsewhere
            seconds = time.monotonic() - started
            logger.info(
                "state restored",
                roots=sorted(targets),
                files=files,
                bytes=size,
                skipped=len(skipped),
                seconds=seconds,
            )
            return RestoreReport(files, size, seconds, skipped)

    def _restore_one(self, key: str, root: SyncRoot, rel: str, entry: _Entry) -> Signature | str:
        """Download one entry into place; its local signature, or why it was not restored."""
        *parents, name = rel.split("/")
        try:
            dir_fd = _open_dirs(root.path, parents)
        except _Refused as exc:
            return f"refused ({exc})"
        except OSError as exc:
            return f"could not create its folder ({exc.strerror})"
        try:
            _clear_target(dir_fd, name)
            if _is_sqlite(root, name):
                # A stale WAL replayed onto the restored snapshot would corrupt it.
                for suffix in _SQLITE_SIDE_FILES:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(name + suffix, dir_fd=dir_fd)
            last_error = ""
            for _attempt in range(2):
                try:
                    return self._download(key, entry, dir_fd, name)
                except _Corrupt as exc:
                    last_error = f"download did not match the manifest ({exc})"
                except (ClientError, BotoCoreError) as exc:
                    last_error = f"download failed ({_aws_error(exc)})"
            return last_error
        except _Refused as exc:
            return f"refused ({exc})"
        except OSError as exc:
            return f"could not be written ({exc.strerror})"
        finally:
            os.close(dir_fd)

    def _download(self, key: str, entry: _Entry, dir_fd: int, name: str) -> Signature:
        """Fetch the entry's version into a temp file beside the target, verify it, fsync, rename."""
        temp = f".sync-{secrets.token_hex(8)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as out:
                request: dict[str, Any] = {"Bucket": self._bucket, "Key": self._prefix + key}
                if entry.version_id is not None and entry.version_id != "null":
                    request["VersionId"] = entry.version_id
                body = self._s3.get_object(**request)["Body"]
                digest, received = hashlib.sha256(), 0
                try:
                    for chunk in body.iter_chunks(_CHUNK):
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
        return (info.st_size, info.st_mtime_ns, _NO_FILE, _NO_FILE)

    def _remove_strays(self, root: SyncRoot, plan: dict[str, tuple[SyncRoot, str, _Entry]]) -> None:
        """Delete regular files the manifest does not list, except under excluded patterns."""
        if root.path.is_symlink():
            return
        removed = 0
        for rel, _info in _walk(root.path, self._excluders[root.name]):
            key = f"{root.name}/{rel}"
            if key not in plan:
                path = root.path / rel
                # A database's side files go with it: a stale WAL must never meet a new database.
                sides = _SQLITE_SIDE_FILES if _is_sqlite(root, path.name) else ()
                for victim in (path, *(path.with_name(path.name + s) for s in sides)):
                    with contextlib.suppress(FileNotFoundError):
                        victim.unlink()
                removed += 1
        if removed:
            logger.info("local files not in the backup removed", root=root.name, files=removed)

    # -------------------------------------------------------------------------------------- backup

    def backup(self) -> BackupReport:
        """Upload what changed since the last manifest, delete what disappeared, then write the manifest."""
        with self._lock:
            started = time.monotonic()
            requests = 0
            if self._known is None:
                # Never restored in this process: compare with what S3 holds rather than re-upload it all.
                requests += 1
                self._adopt_manifest(self._read_manifest() or {})
            known = dict(self._known or {})
            warnings: list[str] = []
            local = self._scan(warnings)
            local = self._apply_limits(local, warnings)

            changed = [
                f for f in local.values() if self._signatures.get(f.key) != f.signature or f.key not in known
            ]
            unchanged = len(local) - len(changed)
            with (
                tempfile.TemporaryDirectory(prefix="openclaw-snapshot-") as scratch,
                ThreadPoolExecutor(max_workers=self._workers(len(changed))) as pool,
            ):
                outcomes = list(pool.map(lambda f: self._back_up_one(f, known.get(f.key), scratch), changed))

            files: dict[str, _Entry] = {}
            signatures: dict[str, Signature] = {}
            failed: list[str] = []
            uploaded = size = 0
            by_key = {o.key: o for o in outcomes}
            for key, item in local.items():
                outcome = by_key.get(key)
                if outcome is None:
                    files[key], signatures[key] = known[key], self._signatures[key]
                    continue
                requests += outcome.requests
                if outcome.entry is None:
                    failed.append(f"{key}: {outcome.error}")
                    if key in known:
                        files[key] = known[key]  # the previous backup stays; the next backup retries
                    continue
                files[key], signatures[key] = outcome.entry, item.signature
                if outcome.uploaded:
                    uploaded, size = uploaded + 1, size + outcome.bytes
                else:
                    unchanged += 1
            for key, entry in known.items():
                if key in files:
                    continue
                root = self._roots.get(_root_of(key))
                keep = (
                    root is None
                    or key in self._unrestored
                    or key in self._over_limit
                    or not root.path.is_dir()
                    or root.path.is_symlink()
                )
                if keep:
                    files[key] = entry
                else:
                    self._pending_deletes.add(key)
            self._pending_deletes -= set(files)

            deleted, delete_requests, delete_failures = self._delete(sorted(self._pending_deletes))
            requests += delete_requests
            failed += delete_failures

            if files != self._known:
                try:
                    requests += 1
                    self._write_manifest(files)
                except (ClientError, BotoCoreError) as exc:
                    failed.append(f"manifest.json: {_aws_error(exc)}")
                    logger.error(
                        "manifest not written; the previous backup stays current", error=_aws_error(exc)
                    )
                    return self._report(
                        uploaded, deleted, unchanged, size, requests, started, warnings, failed
                    )
            self._known = files
            self._signatures = {**{k: v for k, v in self._signatures.items() if k in files}, **signatures}
            self._unrestored &= set(files) - set(local)
            report = self._report(uploaded, deleted, unchanged, size, requests, started, warnings, failed)
            logger.info(
                "state backed up",
                uploaded=uploaded,
                deleted=deleted,
                unchanged=report.unchanged,
                bytes=size,
                requests=requests,
                failed=len(failed),
                seconds=report.seconds,
            )
            return report

    def _report(
        self,
        uploaded: int,
        deleted: int,
        unchanged: int,
        size: int,
        requests: int,
        started: float,
        warnings: list[str],
        failed: list[str],
    ) -> BackupReport:
        self._announce(warnings)
        return BackupReport(
            uploaded, deleted, unchanged, size, requests, time.monotonic() - started, warnings, failed
        )

    def _announce(self, warnings: list[str]) -> None:
        """Tell the user each warning once, and again only after it went away and came back."""
        fresh = [w for w in warnings if w not in self._warned]
        self._warned = set(warnings)
        for text in fresh:
            logger.warning("backup warning", warning=text)
            if self._on_warning is not None:
                try:
                    self._on_warning(text)
                except Exception:
                    logger.exception("backup warning not delivered")

    def _scan(self, warnings: list[str]) -> dict[str, _LocalFile]:
        """Every file of every root that is eligible for backup, with its change signature."""
        found: dict[str, _LocalFile] = {}
        for root in self._roots.values():
            if not root.path.is_dir() or root.path.is_symlink():
                continue
            entries = dict(_walk(root.path, self._excluders[root.name]))
            for rel, info in entries.items():
                key = f"{root.name}/{rel}"
                name = rel.rsplit("/", 1)[-1]
                if root.name == "state" and _is_side_file(rel, entries):
                    continue  # folded into its database's snapshot
                try:
                    _check_relative(rel)
                    if len(self._prefix.encode() + key.encode()) > _MAX_KEY_BYTES:
                        raise ValueError("its path is too long")
                except (ValueError, UnicodeEncodeError) as exc:
                    reason = exc.args[0] if isinstance(exc, ValueError) else "its name is not valid UTF-8"
                    warnings.append(f"{_display(key)} was not backed up: {reason}.")
                    continue
                sqlite_db = _is_sqlite(root, name)
                wal_size = wal_mtime = _NO_FILE
                size = info.st_size
                if sqlite_db:
                    try:
                        wal = os.lstat(root.path / (rel + "-wal"))
                        wal_size, wal_mtime = wal.st_size, wal.st_mtime_ns
                        size += wal.st_size
                    except FileNotFoundError:
                        pass
                found[key] = _LocalFile(
                    key=key,
                    root=root,
                    path=root.path / rel,
                    size=size,
                    mtime_ns=info.st_mtime_ns,
                    mode=stat.S_IMODE(info.st_mode),
                    signature=(info.st_size, info.st_mtime_ns, wal_size, wal_mtime),
                    sqlite=sqlite_db,
                )
        return found

    def _apply_limits(self, local: dict[str, _LocalFile], warnings: list[str]) -> dict[str, _LocalFile]:
        """Drop files over the per-file limit, then the largest ones until the total fits."""
        limits = self._limits
        self._over_limit = set()
        kept: dict[str, _LocalFile] = {}
        for key, item in local.items():
            if item.size > limits.max_file_bytes:
                warnings.append(
                    f"{_display(key)} ({_human(item.size)}) is larger than the "
                    f"{_human(limits.max_file_bytes)} per-file limit and was not backed up."
                )
                self._over_limit.add(key)
            else:
                kept[key] = item
        total = sum(item.size for item in kept.values())
        for item in sorted(kept.values(), key=lambda f: (-f.size, f.key)):
            if total <= limits.max_total_bytes:
                break
            warnings.append(
                f"{_display(item.key)} ({_human(item.size)}) was not backed up: your files together are "
                f"larger than the {_human(limits.max_total_bytes)} backup limit."
            )
            self._over_limit.add(item.key)
            del kept[item.key]
            total -= item.size
        return kept

    def _back_up_one(self, item: _LocalFile, previous: _Entry | None, scratch: str) -> _Outcome:
        """Hash one changed file (a snapshot for a database) and upload it unless its content is known."""
        try:
            if item.sqlite:
                snapshot = Path(scratch) / f"{secrets.token_hex(8)}.sqlite"
                if _snapshot_sqlite(item.path, snapshot):
                    try:
                        return self._upload(item, previous, snapshot, stable=True)
                    finally:
                        snapshot.unlink(missing_ok=True)
            return self._upload(item, previous, item.path, stable=False)
        except FileNotFoundError:
            return _Outcome(item.key, error="it disappeared while being backed up")
        except (OSError, sqlite3.Error) as exc:
            return _Outcome(item.key, error=f"it could not be read ({exc})")
        except (ClientError, BotoCoreError) as exc:
            return _Outcome(item.key, requests=1, error=f"upload failed ({_aws_error(exc)})")

    def _upload(self, item: _LocalFile, previous: _Entry | None, source: Path, *, stable: bool) -> _Outcome:
        with open(source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data: bytes | None = None
            if size <= _INLINE_BYTES:
                data = handle.read()
                size, sha = len(data), hashlib.sha256(data).hexdigest()
            else:
                sha = _hash_stream(handle)
            entry = _Entry(size, item.mtime_ns, sha, None, item.mode)
            if previous is not None and (previous.size, previous.sha256) == (size, sha):
                # Touched, not changed: keep the stored object, record the new mtime.
                return _Outcome(item.key, entry=_with_version(entry, previous.version_id))
            body: bytes | IO[bytes] = data if data is not None else handle
            if data is None:
                handle.seek(0)
            response = self._s3.put_object(Bucket=self._bucket, Key=self._prefix + item.key, Body=body)
        if data is None and not stable:
            after = os.lstat(source)
            if (after.st_size, after.st_mtime_ns) != item.signature[:2]:
                # The object may not match the hash; the manifest keeps the previous version instead.
                return _Outcome(item.key, requests=1, error="it changed while being backed up")
        return _Outcome(
            item.key,
            entry=_with_version(entry, response.get("VersionId")),
            uploaded=True,
            bytes=size,
            requests=1,
        )

    def _delete(self, keys: list[str]) -> tuple[int, int, list[str]]:
        """Delete the objects of vanished files (versioning keeps them); (deleted, requests, errors)."""
        deleted, requests, failures = 0, 0, []
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            requests += 1
            try:
                response = self._s3.delete_objects(
                    Bucket=self._bucket,
                    Delete={"Objects": [{"Key": self._prefix + key} for key in batch], "Quiet": True},
                )
            except (ClientError, BotoCoreError) as exc:
                failures += [f"{key}: delete failed ({_aws_error(exc)})" for key in batch]
                continue
            errors = {
                e.get("Key", "")[len(self._prefix) :]: e.get("Code", "") for e in response.get("Errors", [])
            }
            failures += [f"{key}: delete failed ({code})" for key, code in errors.items()]
            for key in batch:
                if key not in errors:
                    deleted += 1
                    self._pending_deletes.discard(key)
        return deleted, requests, failures

    # ------------------------------------------------------------------------------------ manifest

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=self.manifest_key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            document = json.loads(response["Body"].read())
        except ValueError as exc:
            raise ManifestError(f"{self.manifest_key} is not JSON") from exc
        if not isinstance(document, dict) or document.get("version") != MANIFEST_VERSION:
            raise ManifestError(f"{self.manifest_key} is not a version {MANIFEST_VERSION} manifest")
        files = document.get("files")
        if not isinstance(files, dict):
            raise ManifestError(f"{self.manifest_key} has no files")
        return files

    def _adopt_manifest(self, manifest: dict[str, Any]) -> None:
        known: dict[str, _Entry] = {}
        for key, raw in manifest.items():
            with contextlib.suppress(ValueError, _Refused):
                self._locate(key)
                known[key] = _Entry.from_json(raw)
        self._known = known
        # Signatures of plain files can be trusted from the manifest; databases are re-snapshotted once.
        self._signatures = {
            key: (e.size, e.mtime_ns, _NO_FILE, _NO_FILE)
            for key, e in known.items()
            if not _is_sqlite(self._roots.get(_root_of(key)), key.rsplit("/", 1)[-1])
        }

    def _write_manifest(self, files: dict[str, _Entry]) -> None:
        document = {
            "version": MANIFEST_VERSION,
            "createdAt": time.time(),
            "files": {key: files[key].to_json() for key in sorted(files)},
        }
        self._s3.put_object(
            Bucket=self._bucket,
            Key=self.manifest_key,
            Body=json.dumps(document, separators=(",", ":")).encode(),
            ContentType="application/json",
        )

    # ------------------------------------------------------------------------------------- helpers

    def _locate(self, key: str) -> tuple[SyncRoot | None, str | None]:
        """The root and relative path a manifest key names; (None, None) for a root not synced here."""
        if not isinstance(key, str) or "/" not in key:
            raise _Refused("not under a root")
        root_name, rel = key.split("/", 1)
        if _bad_segment(root_name):
            raise _Refused("not under a root")
        try:
            _check_relative(rel)
        except ValueError as exc:
            raise _Refused(str(exc)) from exc
        root = self._roots.get(root_name)
        if root is None:
            return None, None
        if self._excluders[root_name].excludes(rel):
            raise _Refused("excluded from sync")
        return root, rel

    def _workers(self, jobs: int) -> int:
        return max(1, min(self._limits.parallelism, jobs))


def default_roots(openclaw_home: Path) -> list[SyncRoot]:
    """The agent's workspace and OpenClaw's state dir under OPENCLAW_HOME, minus caches and side files."""
    state = openclaw_home / ".openclaw"
    return [
        SyncRoot("workspace", state / "workspace"),
        SyncRoot(
            "state",
            state,
            (
                "workspace/**",
                "cache/**",
                "tmp/**",
                "media/**",
                "plugin-skills/**",
                "logs/**",
                "*.lock",
                "**/*.reindex-lock.sqlite*",
                "**/*-wal",
                "**/*-shm",
            ),
        ),
    ]


class _Excluder:
    """Glob patterns on '/'-separated relative paths: `*` stays within a segment, `**` spans segments,
    a pattern without '/' matches a name at any depth, and excluding a folder excludes what is in it."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._patterns = [
            tuple(p.strip("/").split("/")) if "/" in p.strip("/") else ("**", p)
            for p in patterns
            if p.strip("/")
        ]

    def matches(self, rel: str) -> bool:
        """Whether this exact path matches a pattern."""
        segments = tuple(rel.split("/"))
        return any(_glob(pattern, segments) for pattern in self._patterns)

    def excludes(self, rel: str) -> bool:
        """Whether this path or one of its folders matches a pattern."""
        segments = rel.split("/")
        return any(self.matches("/".join(segments[:n])) for n in range(1, len(segments) + 1))


def _glob(pattern: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if not pattern:
        return not segments
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob(rest, segments[i:]) for i in range(len(segments) + 1))
    return bool(segments) and fnmatchcase(segments[0], head) and _glob(rest, segments[1:])


def _walk(top: Path, excluder: _Excluder, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under `top` as (relative path, lstat), never following symlinks, pruning exclusions."""
    try:
        with os.scandir(top) as listing:
            entries = list(listing)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        rel = prefix + entry.name
        if excluder.matches(rel):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path), excluder, rel + "/")
            elif entry.is_file(follow_symlinks=False):
                yield rel, entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we looked; the next backup sees its absence


def _open_dirs(root: Path, parts: list[str]) -> int:
    """An fd of root/parts…, creating folders as needed and refusing any symlink on the way."""
    if root.is_symlink():
        raise _Refused(f"{root} is a symlink")
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    kind = "a symlink" if _lstat_is_link(part, fd) else "not a folder"
                    raise _Refused(f"folder {part!r} on its path is {kind}") from exc
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clear_target(dir_fd: int, name: str) -> None:
    """Refuse a symlink at the target; remove an empty folder that stands where a file belongs."""
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise _Refused("the target is a symlink")
    if stat.S_ISDIR(info.st_mode):
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as exc:
            raise _Refused("a non-empty folder stands where the file belongs") from exc


def _lstat_is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _check_relative(rel: str) -> None:
    """Raise ValueError unless `rel` is a plain relative path that stays inside its root."""
    if not rel:
        raise ValueError("empty path")
    if "\\" in rel or "\x00" in rel:
        raise ValueError("backslash or NUL in path")
    if rel.startswith("/"):
        raise ValueError("absolute path")
    if any(segment in ("", ".", "..") for segment in rel.split("/")):
        raise ValueError("path escapes its root")
    rel.encode("utf-8")  # surrogate-escaped bytes cannot become an S3 key


def _bad_segment(name: str) -> bool:
    return not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..")


def _is_sqlite(root: SyncRoot | None, name: str) -> bool:
    return root is not None and root.name == "state" and name.endswith(_SQLITE_SUFFIXES)


def _is_side_file(rel: str, entries: dict[str, os.stat_result]) -> bool:
    """A -wal/-shm/-journal file next to a database that is snapshotted instead."""
    for suffix in _SQLITE_SIDE_FILES:
        if rel.endswith(suffix):
            database = rel[: -len(suffix)]
            return database.endswith(_SQLITE_SUFFIXES) and database in entries
    return False


def _snapshot_sqlite(source: Path, target: Path) -> bool:
    """Copy a live database consistently with SQLite's online backup; False if it is not a database."""
    uri = f"file:{quote(str(source))}?mode=ro"
    try:
        with (
            contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as src,
            contextlib.closing(sqlite3.connect(target)) as dst,
        ):
            src.backup(dst)
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError:
        target.unlink(missing_ok=True)
        return False  # a file named *.db that is not SQLite: back it up as it is
    return True


def _hash_stream(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _with_version(entry: _Entry, version_id: str | None) -> _Entry:
    return _Entry(entry.size, entry.mtime_ns, entry.sha256, version_id, entry.mode)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _aws_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "error"))
    return type(exc).__name__


def _display(key: str) -> str:
    return f"'{key}'"


def _human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"
