"""StateSync: the one object the bridge holds to restore a user's roots and back them up.

It owns what the steps share (the store, the roots, the ledger) and runs one restore or backup at a
time. The methods are synchronous and block on S3 and the disk; the bridge calls them with
`asyncio.to_thread`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from bridge.state_sync.backup import BackupReport, Settlement, commit, plan_backup, upload
from bridge.state_sync.inventory import SyncLimits, scan
from bridge.state_sync.ledger import Ledger
from bridge.state_sync.restore import RestoreReport, adopt, fetch, plan_restore, remove_strays
from bridge.state_sync.roots import Roots, SyncRoot
from bridge.state_sync.store import BackupStore
from serverless_openclaw.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_DEFAULT_LIMITS = SyncLimits()


class StateSync:
    """Restores a user's roots from S3 and backs them up incrementally against the last known manifest."""

    def __init__(
        self,
        s3_client: S3Client,
        bucket: str,
        user_id: str,
        roots: Sequence[SyncRoot],
        limits: SyncLimits = _DEFAULT_LIMITS,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self._store = BackupStore(s3_client, bucket, user_id)
        self._roots = Roots(roots)
        if limits.parallelism < 1:
            raise ValueError("parallelism must be at least 1")
        self._limits = limits
        self._on_warning = on_warning
        self._lock = threading.Lock()
        self._ledger = Ledger()
        self._warned: set[str] = set()

    @property
    def manifest_key(self) -> str:
        """The S3 key of this user's manifest."""
        return self._store.manifest_key

    def restore(self, only: Collection[str] | None = None) -> RestoreReport:
        """Make the roots (all, or those named in `only`) equal the manifest in S3; no manifest: fresh user.

        Restoring root by root lets the bridge start OpenClaw on its state while the workspace is
        still coming down; until a root is restored, its entries count as unrestored, so a backup in
        between never deletes them.
        """
        with self._lock:
            started = time.monotonic()
            targets = self._roots.names() if only is None else set(only) & self._roots.names()
            partial = only is not None and self._ledger.known is not None
            manifest = self._store.read_manifest()
            self._ledger.restored_roots |= targets
            if manifest is None:
                if not partial:
                    self._ledger.forget()
                logger.info("no backup to restore: fresh user", roots=sorted(targets))
                return RestoreReport(0, 0, time.monotonic() - started)
            plan = plan_restore(manifest, self._roots, targets)
            for name in sorted(targets):
                remove_strays(self._roots[name], self._roots, plan.placements)
            fetched = fetch(self._store, plan.placements, self._limits.workers(len(plan.placements)))
            adopt(self._ledger, plan, fetched, targets, self._roots, partial=partial)
            skipped = plan.refused + fetched.skipped
            seconds = time.monotonic() - started
            logger.info(
                "state restored",
                roots=sorted(targets),
                files=fetched.files,
                bytes=fetched.bytes,
                skipped=len(skipped),
                seconds=seconds,
            )
            return RestoreReport(fetched.files, fetched.bytes, seconds, skipped)

    def backup(self) -> BackupReport:
        """Upload what changed since the last manifest, delete what disappeared, then write the manifest."""
        with self._lock:
            started = time.monotonic()
            requests = 0
            if self._ledger.known is None:
                # Never restored in this process: compare with what S3 holds rather than re-upload it all.
                requests += 1
                self._ledger.load(self._store.read_manifest() or {}, self._roots)
            scanned, warnings = scan(self._roots, self._store.prefix)
            plan = plan_backup(scanned, self._ledger.known or {}, self._ledger.signatures, self._limits)
            warnings += plan.warnings
            outcomes = upload(self._store, plan, self._limits.workers(len(plan.changed)))
            settled = commit(self._store, self._ledger, plan, outcomes, self._roots.present())
            report = self._report(settled, requests + settled.requests, started, warnings)
            if settled.written:
                logger.info(
                    "state backed up",
                    uploaded=report.uploaded,
                    deleted=report.deleted,
                    unchanged=report.unchanged,
                    bytes=report.bytes,
                    requests=report.requests,
                    failed=len(report.failed),
                    seconds=report.seconds,
                )
            return report

    def _report(
        self, settled: Settlement, requests: int, started: float, warnings: list[str]
    ) -> BackupReport:
        self._announce(warnings)
        return BackupReport(
            settled.uploaded,
            settled.deleted,
            settled.unchanged,
            settled.bytes,
            requests,
            time.monotonic() - started,
            warnings,
            settled.failed,
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
