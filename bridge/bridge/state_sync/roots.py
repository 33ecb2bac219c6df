"""The folders state sync mirrors: each root is a local folder stored under its own name in S3.

A manifest key is `{root name}/{path relative to the root}`; a key whose root this bridge does not sync
is still a valid key, carried from manifest to manifest untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bridge.state_sync.paths import Excluder, Refused, bad_segment, check_relative, walk


@dataclass(frozen=True)
class SyncRoot:
    """A local folder mirrored under `users/{userId}/{name}/`; `exclude` globs are relative to `path`."""

    name: str
    path: Path
    exclude: tuple[str, ...] = ()

    def present(self) -> bool:
        """Whether the folder is there as a real folder (a symlinked root is never synced)."""
        return self.path.is_dir() and not self.path.is_symlink()


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


def root_of(key: str) -> str:
    """The root name a manifest key belongs to (its first path segment)."""
    return key.split("/", 1)[0]


class Roots:
    """The roots this bridge syncs, by name, each with its exclusion rules."""

    def __init__(self, roots: Sequence[SyncRoot]) -> None:
        names = [root.name for root in roots]
        if len(set(names)) != len(names) or any(bad_segment(name) for name in names):
            raise ValueError(f"root names must be distinct single path segments: {names}")
        self._roots = {root.name: root for root in roots}
        self._excluders = {root.name: Excluder(root.exclude) for root in roots}

    def __iter__(self) -> Iterator[SyncRoot]:
        return iter(self._roots.values())

    def __getitem__(self, name: str) -> SyncRoot:
        return self._roots[name]

    def get(self, name: str) -> SyncRoot | None:
        """The root of that name, None if this bridge does not sync it."""
        return self._roots.get(name)

    def names(self) -> set[str]:
        """The names of every root synced here."""
        return set(self._roots)

    def present(self) -> set[str]:
        """The names of the roots whose folder is there now."""
        return {root.name for root in self if root.present()}

    def files(self, root: SyncRoot) -> Iterator[tuple[str, os.stat_result]]:
        """The root's regular files that are not excluded, as (relative path, lstat)."""
        return walk(root.path, self._excluders[root.name])

    def locate(self, key: str) -> tuple[SyncRoot | None, str | None]:
        """The root and relative path a manifest key names; (None, None) for a root not synced here."""
        if not isinstance(key, str) or "/" not in key:
            raise Refused("not under a root")
        root_name, rel = key.split("/", 1)
        if bad_segment(root_name):
            raise Refused("not under a root")
        try:
            check_relative(rel)
        except ValueError as exc:
            raise Refused(str(exc)) from exc
        root = self._roots.get(root_name)
        if root is None:
            return None, None
        if self._excluders[root_name].excludes(rel):
            raise Refused("excluded from sync")
        return root, rel
