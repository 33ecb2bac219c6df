"""The manifest: the one JSON document that says which files a user's backup holds, and in which S3 version.

A document is `{"version": 1, "createdAt": <epoch seconds>, "files": {<key>: <entry>}}`, keys being
`{root}/{relative path}`; an entry records size, mtime (seconds, and exact nanoseconds), sha256, mode and
the S3 version id the file was uploaded as. This module reads and writes that JSON; it never touches S3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

MANIFEST_VERSION = 1

_HEX = frozenset("0123456789abcdef")


class ManifestError(Exception):
    """The manifest in S3 exists but cannot be read as one; nothing is restored over the local state."""


_MAX_NS = 2**63
"""Nanosecond times are 64-bit signed for os.utime; anything outside cannot be put on a file."""
_MAX_SECONDS = _MAX_NS / 1e9


@dataclass(frozen=True)
class Entry:
    """One file as the manifest records it."""

    size: int
    mtime_ns: int
    sha256: str
    version_id: str | None
    mode: int

    def to_json(self) -> dict[str, Any]:
        """The entry as the manifest stores it (no `versionId` when S3 gave none)."""
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
    def from_json(cls, item: Any) -> Entry:
        """An entry read from a manifest; ValueError naming the first field that is missing or wrong."""
        if not isinstance(item, dict):
            raise ValueError("entry is not an object")
        size, sha, mode = item.get("size"), item.get("sha256"), item.get("mode", 0o644)
        if not _is_int(size) or size < 0:
            raise ValueError("bad size")
        if not _is_sha256(sha):
            raise ValueError("bad sha256")
        mtime_ns = _mtime_ns(item)
        if not _is_int(mode):
            raise ValueError("bad mode")
        version_id = item.get("versionId")
        if version_id is not None and not isinstance(version_id, str):
            raise ValueError("bad versionId")
        return cls(size, mtime_ns, sha, version_id, mode & 0o777)

    def with_version(self, version_id: str | None) -> Entry:
        """The same file, stored as another S3 version."""
        return replace(self, version_id=version_id)


def parse_manifest(document: bytes, name: str) -> dict[str, Any]:
    """The `files` of a manifest document, entries still unchecked; ManifestError if it is not a manifest."""
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        raise ManifestError(f"{name} is not JSON") from exc
    if not isinstance(parsed, dict) or parsed.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{name} is not a version {MANIFEST_VERSION} manifest")
    files = parsed.get("files")
    if not isinstance(files, dict):
        raise ManifestError(f"{name} has no files")
    return files


def serialise_manifest(files: dict[str, Entry], created_at: float) -> bytes:
    """The compact JSON document listing `files` in key order."""
    document = {
        "version": MANIFEST_VERSION,
        "createdAt": created_at,
        "files": {key: files[key].to_json() for key in sorted(files)},
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _mtime_ns(item: dict[str, Any]) -> int:
    """The exact `mtimeNs`, or else the float `mtime` (manifests written by hand may only have that)."""
    mtime_ns, mtime = item.get("mtimeNs"), item.get("mtime")
    if not _is_int(mtime_ns):
        if not isinstance(mtime, int | float) or isinstance(mtime, bool) or not abs(mtime) < _MAX_SECONDS:
            raise ValueError("bad mtime")  # also NaN and infinities
        mtime_ns = int(mtime * 1e9)
    if not -_MAX_NS < mtime_ns < _MAX_NS:
        # A time the file system cannot store would fail the restore of the whole root, not this entry.
        raise ValueError("bad mtime")
    return mtime_ns


def _is_sha256(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 64 and all(c in _HEX for c in value)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
