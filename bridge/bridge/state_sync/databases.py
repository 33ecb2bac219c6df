"""OpenClaw's SQLite databases in the state root: backed up as consistent snapshots, restored alone.

A live database in WAL mode keeps committed rows in its -wal file, so copying the main file would lose
them: a backup uploads a snapshot taken with SQLite's online backup instead, and never the side files. A
restore deletes any side files beside the database it writes, since a stale WAL replayed onto a restored
snapshot would corrupt it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection
from pathlib import Path
from urllib.parse import quote

from bridge.state_sync.roots import SyncRoot

SIDE_FILES = ("-wal", "-shm", "-journal")
_SUFFIXES = (".sqlite", ".db")


def is_database(root: SyncRoot | None, name: str) -> bool:
    """Whether a file of that name in that root is treated as a SQLite database."""
    return root is not None and root.name == "state" and name.endswith(_SUFFIXES)


def is_side_file(rel: str, files: Collection[str]) -> bool:
    """A -wal/-shm/-journal file next to a database that is snapshotted instead."""
    for suffix in SIDE_FILES:
        if rel.endswith(suffix):
            database = rel[: -len(suffix)]
            return database.endswith(_SUFFIXES) and database in files
    return False


def snapshot(source: Path, target: Path) -> bool:
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
