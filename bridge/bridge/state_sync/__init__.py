"""The agent's files and OpenClaw's state in S3: restored at boot, backed up incrementally while it runs.

Each synced root ("workspace", "state") is mirrored file by file under `users/{userId}/{root}/`, and
`users/{userId}/manifest.json` lists every file with its size, mtime, sha256, mode and the S3 version it
was uploaded as. A backup uploads only what changed and writes the manifest last; a restore trusts only
the manifest and fetches exactly the versions it names, so a backup that died halfway (objects uploaded,
no new manifest yet) still restores the previous consistent set. (docs/architecture.md, Data model, places
this beside the rest of the stack's data.)

The pieces: `manifest` (the document and its entries), `paths` (what may be read or written where),
`roots`, `databases` (SQLite snapshots), `inventory` (what a backup covers, within the limits), `store`
(every S3 request), `restore` and `backup` (the steps), `ledger` (what the process knows between runs)
and `sync` (StateSync, which runs the steps one at a time).
"""

from bridge.state_sync.backup import BackupReport
from bridge.state_sync.inventory import GiB, MiB, SyncLimits
from bridge.state_sync.manifest import MANIFEST_VERSION, ManifestError
from bridge.state_sync.restore import RestoreReport
from bridge.state_sync.roots import SyncRoot, default_roots
from bridge.state_sync.sync import StateSync

__all__ = [
    "MANIFEST_VERSION",
    "BackupReport",
    "GiB",
    "ManifestError",
    "MiB",
    "RestoreReport",
    "StateSync",
    "SyncLimits",
    "SyncRoot",
    "default_roots",
]
