"""What this process knows of the user's backup between one restore or backup and the next."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from bridge.state_sync.databases import is_database
from bridge.state_sync.inventory import NO_FILE, Signature
from bridge.state_sync.manifest import Entry
from bridge.state_sync.paths import Refused
from bridge.state_sync.roots import Roots, root_of


@dataclass
class Ledger:
    """The last manifest read or written, the local signature each of its files had then, and the entries
    a backup must carry over even though no local file matches them."""

    known: dict[str, Entry] | None = None
    """None until the first restore or backup of this process has read the manifest."""
    signatures: dict[str, Signature] = field(default_factory=dict)
    unrestored: set[str] = field(default_factory=set)
    """Entries restore could not put on disk (or has not yet): carried into every manifest until the
    file reappears, so a failed restore never turns into a deletion in S3."""
    restored_roots: set[str] = field(default_factory=set)
    pending_deletes: set[str] = field(default_factory=set)
    """Keys whose objects are to be deleted: kept until a delete succeeds."""

    def forget(self) -> None:
        """Start over as a fresh user: no file known, none unrestored."""
        self.known, self.signatures, self.unrestored = {}, {}, set()

    def load(self, manifest: dict[str, Any], roots: Roots) -> None:
        """Take a manifest read from S3 as the last known one, dropping entries restore would refuse."""
        known: dict[str, Entry] = {}
        for key, raw in manifest.items():
            with contextlib.suppress(ValueError, Refused):
                roots.locate(key)
                known[key] = Entry.from_json(raw)
        self.known = known
        # Signatures of plain files can be trusted from the manifest; databases are re-snapshotted once.
        self.signatures = {
            key: (e.size, e.mtime_ns, NO_FILE, NO_FILE)
            for key, e in known.items()
            if not is_database(roots.get(root_of(key)), key.rsplit("/", 1)[-1])
        }
