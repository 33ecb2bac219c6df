"""An append-only write-ahead journal: records framed and checksummed, on disk before they are acknowledged.

The local AWS writes one record per change it makes and answers the request only once the record is
fsynced, so a crash (SIGKILL, a machine that dies) loses no acknowledged write. Records live in numbered
files, `aws-journal.<generation>`; a snapshot names the generation from which the journal still matters,
so compaction is: start a new generation, write the snapshot, delete the older files.

A record is `length (4 bytes, big-endian) · CRC-32 of the payload (4 bytes) · payload`. A crash in the
middle of an append leaves a short or mismatching record at the end of a file: reading stops there, the
torn bytes are cut off, and the journal carries on after the last whole record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PREFIX = "aws-journal."
_HEADER = struct.Struct(">II")
MAX_RECORD_BYTES = 1 << 31
"""Bigger than any request the local AWS takes; a length above it can only be a torn header."""

logger = logging.getLogger("local.journal")


def _sync(fd: int) -> None:
    # fdatasync where the platform has it (Linux): the data and the file's size, without its timestamps.
    getattr(os, "fdatasync", os.fsync)(fd)


class Journal:
    """The journal files of one state directory: replayed once, then appended to."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.generation = 0
        self._file: BinaryIO | None = None
        self._written = 0  # bytes appended to the current file
        self._synced = 0  # of which on disk
        self._sync_lock = threading.Lock()

    def path(self, generation: int) -> Path:
        """The file of one generation."""
        return self.directory / f"{PREFIX}{generation}"

    def generations(self) -> list[int]:
        """The generations on disk, oldest first."""
        found = []
        for path in self.directory.glob(PREFIX + "*"):
            suffix = path.name.removeprefix(PREFIX)
            if suffix.isdigit():
                found.append(int(suffix))
        return sorted(found)

    def replay(self, since: int) -> Iterator[bytes]:
        """Every whole record of the generations from `since` on, in the order written; torn tails are cut
        off the files (they were never acknowledged)."""
        for generation in self.generations():
            if generation >= since:
                yield from self._records(self.path(generation))

    def _records(self, path: Path) -> Iterator[bytes]:
        with path.open("r+b") as journal:
            good = 0
            while True:
                header = journal.read(_HEADER.size)
                if not header:
                    return
                payload = b""
                if len(header) == _HEADER.size:
                    length, checksum = _HEADER.unpack(header)
                    if length <= MAX_RECORD_BYTES:
                        payload = journal.read(length)
                        if len(payload) == length and zlib.crc32(payload) == checksum:
                            good = journal.tell()
                            yield payload
                            continue
                logger.warning("dropping a torn record at the end of %s (offset %d)", path.name, good)
                journal.truncate(good)
                journal.flush()
                _sync(journal.fileno())
                return

    def open(self, generation: int) -> None:
        """Append from now on to the file of `generation` (created if new)."""
        with self._sync_lock:
            self._switch(generation)

    def _switch(self, generation: int) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(generation)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self.generation = generation
        self._written = self._synced = path.stat().st_size
        if created:
            _sync_directory(self.directory)

    def append(self, payload: bytes) -> int:
        """Write one record (not yet durable: `sync` makes it so); the position `sync` must reach."""
        if self._file is None:
            raise RuntimeError("the journal is not open")
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        self._file.write(record)
        self._written += len(record)
        return self._written

    def sync(self, position: int) -> None:
        """Return once everything up to `position` is on disk; one fsync serves every writer waiting."""
        with self._sync_lock:
            if self._synced >= position or self._file is None:
                return
            written = self._written
            _sync(self._file.fileno())
            self._synced = max(self._synced, written)

    @property
    def position(self) -> int:
        """Where the next record goes (what `sync` must reach for everything appended so far)."""
        return self._written

    @property
    def empty(self) -> bool:
        """Whether the current file holds no record."""
        return self._written == 0

    def rotate(self) -> int:
        """Sync the current file and continue in a new generation; the new generation's number."""
        with self._sync_lock:
            if self._file is not None:
                _sync(self._file.fileno())
            self._switch(self.generation + 1)
            return self.generation

    def remove_before(self, generation: int) -> None:
        """Delete the files a snapshot made obsolete."""
        for old in self.generations():
            if old < generation:
                with contextlib.suppress(FileNotFoundError):
                    self.path(old).unlink()

    def close(self) -> None:
        """Close the current file (its records stay)."""
        with self._sync_lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _sync_directory(directory: Path) -> None:
    """Make a new file's name durable (a crash must not lose the file its records went to)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
