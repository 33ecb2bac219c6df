"""The file-system rules state sync never bends: a path stays inside its root, a symlink is never followed
nor written through, and an excluded path is neither backed up nor touched by a restore.

The manifest comes from S3, so a restore treats every key in it as untrusted input: it is checked as a
relative path, and the folders leading to it are opened one by one with O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from fnmatch import fnmatchcase
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """A manifest entry that must not be written where it points."""


def check_relative(rel: str) -> None:
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


def bad_segment(name: str) -> bool:
    """Whether `name` cannot be a single path segment (empty, '.', '..', or holding a separator or NUL)."""
    return not name or "/" in name or "\\" in name or "\x00" in name or name in (".", "..")


class Excluder:
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


def walk(top: Path, excluder: Excluder, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
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
                yield from walk(Path(entry.path), excluder, rel + "/")
            elif entry.is_file(follow_symlinks=False):
                yield rel, entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we looked; the next backup sees its absence


def open_dirs(root: Path, parts: list[str]) -> int:
    """An fd of root/parts…, creating folders as needed and refusing any symlink on the way."""
    if root.is_symlink():
        raise Refused(f"{root} is a symlink")
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            child = _open_child(fd, part)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, part: str) -> int:
    """An fd of the folder `part` inside `fd`, created if missing; Refused if it is a symlink or a file."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, 0o755, dir_fd=fd)
    try:
        return os.open(part, _DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symlink" if _lstat_is_link(part, fd) else "not a folder"
            raise Refused(f"folder {part!r} on its path is {kind}") from exc
        raise


def clear_target(dir_fd: int, name: str) -> None:
    """Refuse a symlink at the target; remove an empty folder that stands where a file belongs."""
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise Refused("the target is a symlink")
    if stat.S_ISDIR(info.st_mode):
        try:
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as exc:
            raise Refused("a non-empty folder stands where the file belongs") from exc


def _lstat_is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False
