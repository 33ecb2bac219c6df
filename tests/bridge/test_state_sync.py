"""State sync against moto S3: what survives a task, what is refused, and how few requests a backup makes."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from bridge.state_sync import (
    ManifestError,
    StateSync,
    SyncLimits,
    SyncRoot,
    default_roots,
)

BUCKET = "openclaw-data"
USER = "user-1"
PREFIX = f"users/{USER}/"
MTIME_NS = 1_790_000_000_123_456_789


@pytest.fixture
def s3() -> Iterator[Any]:
    """A versioned bucket in a fresh moto backend."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


class Calls:
    """Every S3 API operation a client makes, counted with a botocore event hook."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.names.append(model.name)

    def reset(self) -> None:
        with self._lock:
            self.names.clear()


class FailingPuts:
    """The real client, except that PutObject fails for chosen keys (like a throttled or denied upload)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fail_keys: set[str] = set()

    def put_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"] in self.fail_keys:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")
        return self._client.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def sync_for(client: Any, home: Path, **kwargs: Any) -> StateSync:
    return StateSync(client, BUCKET, USER, default_roots(home), **kwargs)


def write(path: Path, data: bytes | str, mtime_ns: int | None = MTIME_NS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def keys(client: Any) -> set[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)
    return {item["Key"][len(PREFIX) :] for item in listing.get("Contents", [])}


def manifest(client: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        client.get_object(Bucket=BUCKET, Key=PREFIX + "manifest.json")["Body"].read()
    )
    return document


def tree(top: Path) -> dict[str, bytes]:
    return {
        path.relative_to(top).as_posix(): path.read_bytes()
        for path in sorted(top.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def put_manifest(
    client: Any, files: dict[str, bytes], entries: dict[str, dict[str, Any]] | None = None
) -> None:
    """Store objects and a hand-written manifest describing them (entries override the computed fields)."""
    listed: dict[str, dict[str, Any]] = {}
    for key, data in files.items():
        client.put_object(Bucket=BUCKET, Key=PREFIX + key, Body=data)
        listed[key] = {
            "size": len(data),
            "mtime": 1_790_000_000.0,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    for key, override in (entries or {}).items():
        listed[key] = {**listed.get(key, {}), **override}
    document = {"version": 1, "createdAt": 1_790_000_000.0, "files": listed}
    client.put_object(Bucket=BUCKET, Key=PREFIX + "manifest.json", Body=json.dumps(document).encode())


# ------------------------------------------------------------------------------------------ restore


def test_restore_of_a_user_without_backup_does_nothing(s3: Any, tmp_path: Path) -> None:
    # Given a user who never had a backup, and a home with a file in it
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "local.md", "mine")
    sync = sync_for(s3, home)

    # When the task restores
    report = sync.restore()

    # Then nothing is downloaded, nothing is refused, the local file is untouched
    assert (report.files, report.bytes, report.skipped) == (0, 0, [])
    assert (home / ".openclaw" / "workspace" / "local.md").read_text() == "mine"


def test_backup_then_restore_into_a_fresh_home_reproduces_files_bytes_and_mtimes(
    s3: Any, tmp_path: Path
) -> None:
    # Given a workspace and an OpenClaw state dir with nested, empty, binary and executable files
    home = tmp_path / "home"
    state = home / ".openclaw"
    write(state / "workspace" / "notes" / "plan.md", "# Plan\n")
    write(state / "workspace" / "empty.txt", b"")
    write(state / "workspace" / "blob.bin", os.urandom(300_000), mtime_ns=MTIME_NS + 5)
    script = write(state / "workspace" / "run.sh", "#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    write(state / "openclaw.json", '{"gateway": {"mode": "local"}}')
    write(state / "agents" / "main" / "sessions" / "cold" / "a.jsonl.zst", b"\x28\xb5\x2f\xfd")
    before = {p: (p.stat().st_mtime_ns, p.stat().st_mode) for p in state.rglob("*") if p.is_file()}
    sync_for(s3, home).restore()

    # When it backs up, and a new task restores into an empty home
    backup = sync_for(s3, home)
    backup.restore()
    report = backup.backup()
    fresh = tmp_path / "fresh"
    restored = sync_for(s3, fresh).restore()

    # Then every file comes back with its bytes, its mtime and its mode
    assert report.uploaded == 6 and report.failed == [] and report.warnings == []
    assert tree(fresh / ".openclaw") == tree(state)
    for path, (mtime_ns, mode) in before.items():
        twin = fresh / path.relative_to(home)
        assert (twin.stat().st_mtime_ns, twin.stat().st_mode) == (mtime_ns, mode), path
    assert restored.files == 6 and restored.bytes == report.bytes and restored.skipped == []
    # And the manifest names every file once, under its root
    files = manifest(s3)["files"]
    assert manifest(s3)["version"] == 1
    assert set(files) == {
        "workspace/notes/plan.md",
        "workspace/empty.txt",
        "workspace/blob.bin",
        "workspace/run.sh",
        "state/openclaw.json",
        "state/agents/main/sessions/cold/a.jsonl.zst",
    }
    assert files["workspace/notes/plan.md"]["sha256"] == hashlib.sha256(b"# Plan\n").hexdigest()
    assert files["workspace/notes/plan.md"]["size"] == 7


def test_restore_makes_the_tree_equal_the_manifest_except_excluded_files(s3: Any, tmp_path: Path) -> None:
    # Given a backup, and a home that has drifted: a stray file, a changed file, an excluded cache
    home = tmp_path / "home"
    state = home / ".openclaw"
    write(state / "workspace" / "kept.md", "backed up")
    sync_for(s3, home).backup()
    write(state / "workspace" / "stray.md", "not in the backup")
    write(state / "workspace" / "kept.md", "edited later, not backed up", mtime_ns=MTIME_NS + 9)
    write(state / "cache" / "ui.js", "regenerable")

    # When the task restores
    sync_for(s3, home).restore()

    # Then the tree is the backup again, and the excluded cache is left alone
    assert (state / "workspace" / "kept.md").read_text() == "backed up"
    assert not (state / "workspace" / "stray.md").exists()
    assert (state / "cache" / "ui.js").read_text() == "regenerable"


# ------------------------------------------------------------------------------------------- backup


@pytest.mark.slow
def test_changing_one_file_of_5000_uploads_only_that_file_and_the_manifest(s3: Any, tmp_path: Path) -> None:
    # Given 5,000 backed-up workspace files
    home = tmp_path / "home"
    workspace = home / ".openclaw" / "workspace"
    for i in range(5000):
        write(workspace / f"d{i % 50}" / f"f{i}.md", f"file {i}")
    sync = sync_for(s3, home)
    sync.restore()
    first = sync.backup()
    calls = Calls(s3)

    # When one file changes and the next backup runs
    write(workspace / "d7" / "f7.md", "file 7, edited", mtime_ns=MTIME_NS + 1)
    report = sync.backup()

    # Then exactly that file and the manifest were sent: no listing, no HEAD
    assert first.uploaded == 5000
    assert calls.names == ["PutObject", "PutObject"]
    assert report.requests == len(calls.names) <= 3
    assert (report.uploaded, report.deleted, report.unchanged) == (1, 0, 4999)
    # And the manifest points at the edited content (restore fetches exactly that version)
    entry = manifest(s3)["files"]["workspace/d7/f7.md"]
    stored = s3.get_object(Bucket=BUCKET, Key=PREFIX + "workspace/d7/f7.md", VersionId=entry["versionId"])
    assert stored["Body"].read() == b"file 7, edited"


def test_a_backup_with_nothing_changed_makes_no_request(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up home, restored by a new task
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "a.md", "a")
    write(home / ".openclaw" / "openclaw.json", "{}")
    sync_for(s3, home).backup()
    sync = sync_for(s3, home)
    sync.restore()
    calls = Calls(s3)

    # When it backs up twice without any change
    reports = [sync.backup(), sync.backup()]

    # Then no S3 request is made at all
    assert calls.names == []
    assert [(r.uploaded, r.deleted, r.unchanged, r.requests) for r in reports] == [(0, 0, 2, 0)] * 2


def test_a_touched_but_identical_file_is_not_uploaded_again(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up file
    home = tmp_path / "home"
    path = write(home / ".openclaw" / "workspace" / "a.md", "same")
    sync = sync_for(s3, home)
    sync.backup()
    calls = Calls(s3)

    # When only its mtime changes
    os.utime(path, ns=(MTIME_NS + 60, MTIME_NS + 60))
    report = sync.backup()

    # Then only the manifest is rewritten (to record the mtime), the content is not re-sent
    assert calls.names == ["PutObject"]
    assert (report.uploaded, report.unchanged) == (0, 1)
    assert manifest(s3)["files"]["workspace/a.md"]["mtimeNs"] == MTIME_NS + 60


def test_a_deleted_file_is_deleted_from_the_backup_and_stays_recoverable(s3: Any, tmp_path: Path) -> None:
    # Given two backed-up files
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "keep.md", "keep")
    gone = write(home / ".openclaw" / "workspace" / "old" / "gone.md", "gone")
    sync = sync_for(s3, home)
    sync.backup()

    # When one is deleted and the next backup runs
    gone.unlink()
    report = sync.backup()

    # Then a new task no longer gets it
    assert (report.deleted, report.uploaded) == (1, 0)
    assert "workspace/old/gone.md" not in keys(s3)
    assert "workspace/old/gone.md" not in manifest(s3)["files"]
    fresh = tmp_path / "fresh"
    sync_for(s3, fresh).restore()
    assert tree(fresh / ".openclaw" / "workspace") == {"keep.md": b"keep"}
    # And the versioned bucket still holds the deleted content
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX + "workspace/old/gone.md")["Versions"]
    assert len(versions) == 1


def test_a_backup_without_restore_compares_with_the_manifest_in_s3(s3: Any, tmp_path: Path) -> None:
    # Given a home that is already backed up
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "a.md", "a")
    write(home / ".openclaw" / "agents" / "main" / "agent" / "openclaw-agent.sqlite", b"")
    sync_for(s3, home).backup()
    calls = Calls(s3)

    # When a process that never restored backs up the same unchanged home
    report = sync_for(s3, home).backup()

    # Then it reads the manifest once and re-uploads nothing
    assert calls.names == ["GetObject"]
    assert (report.uploaded, report.deleted, report.requests) == (0, 0, 1)


def test_excluded_folders_and_side_files_are_never_uploaded(s3: Any, tmp_path: Path) -> None:
    # Given a state dir with caches, temp files, locks and live side files beside the real state
    home = tmp_path / "home"
    state = home / ".openclaw"
    write(state / "openclaw.json", "{}")
    write(state / "workspace" / "a.md", "a")
    for junk in (
        "cache/control-ui/index.js",
        "tmp/gateway.lock",
        "media/photo.jpg",
        "plugin-skills/x/SKILL.md",
        "logs/gateway.log",
        "gateway.lock",
        "agents/main/agent/openclaw-agent.reindex-lock.sqlite",
        "agents/main/agent/openclaw-agent.reindex-lock.sqlite-wal",
        "state/other.bin-wal",
        "state/other.bin-shm",
    ):
        write(state / junk, "junk")

    # When it is backed up
    sync_for(s3, home).backup()

    # Then only the real files are in S3, and the workspace is stored once, under its own root
    assert keys(s3) == {"manifest.json", "state/openclaw.json", "workspace/a.md"}


def test_symlinks_in_the_tree_are_not_followed(s3: Any, tmp_path: Path) -> None:
    # Given a workspace with a symlink to a secret outside it
    home = tmp_path / "home"
    write(tmp_path / "outside" / "secret.txt", "do not upload")
    write(home / ".openclaw" / "workspace" / "a.md", "a")
    (home / ".openclaw" / "workspace" / "link").symlink_to(tmp_path / "outside")
    (home / ".openclaw" / "workspace" / "file-link").symlink_to(tmp_path / "outside" / "secret.txt")

    # When it is backed up
    sync_for(s3, home).backup()

    # Then the secret never leaves the machine
    assert keys(s3) == {"manifest.json", "workspace/a.md"}


def test_a_file_whose_name_is_not_utf8_is_skipped_with_a_readable_warning(s3: Any, tmp_path: Path) -> None:
    # Given a file whose name is not valid UTF-8 (S3 keys must be), beside an ordinary one
    home = tmp_path / "home"
    workspace = home / ".openclaw" / "workspace"
    write(workspace / "ok.md", "fine")
    write(Path(os.fsdecode(bytes(workspace) + b"/caf\xe9.md")), "latin-1 name")

    # When it is backed up
    report = sync_for(s3, home).backup()

    # Then the ordinary file is backed up and the other is named in a warning that says why, in text that
    # can be logged and sent to the user as it is
    assert keys(s3) == {"workspace/ok.md", "manifest.json"}
    assert report.warnings == ["'workspace/caf\ufffd.md' was not backed up: its name is not valid UTF-8."]
    report.warnings[0].encode("utf-8")


def test_files_over_the_per_file_limit_are_skipped_with_one_warning(s3: Any, tmp_path: Path) -> None:
    # Given a per-file limit of 1,000 bytes and a 2,000-byte file
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "small.md", "x" * 10)
    write(home / ".openclaw" / "workspace" / "big.bin", b"\0" * 2000)
    told: list[str] = []
    sync = sync_for(s3, home, limits=SyncLimits(max_file_bytes=1000), on_warning=told.append)

    # When it backs up twice
    first, second = sync.backup(), sync.backup()

    # Then the big file is not in S3, and the user was told once, in words
    assert keys(s3) == {"manifest.json", "workspace/small.md"}
    assert told == [
        "'workspace/big.bin' (2.0 KiB) is larger than the 1000 bytes per-file limit and was not backed up."
    ]
    assert first.warnings == second.warnings == told


def test_a_file_that_grows_past_the_limit_keeps_its_previous_backup(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up file under the limit
    home = tmp_path / "home"
    path = write(home / ".openclaw" / "workspace" / "log.txt", "short")
    told: list[str] = []
    sync = sync_for(s3, home, limits=SyncLimits(max_file_bytes=1000), on_warning=told.append)
    sync.backup()

    # When it grows past the limit
    write(path, "long" * 500, mtime_ns=MTIME_NS + 1)
    report = sync.backup()

    # Then the user is warned and a new task still gets the last version that fit
    assert len(told) == 1 and "log.txt" in told[0] and report.deleted == 0
    fresh = tmp_path / "fresh"
    sync_for(s3, fresh).restore()
    assert (fresh / ".openclaw" / "workspace" / "log.txt").read_text() == "short"


def test_over_the_total_limit_the_largest_files_are_skipped(s3: Any, tmp_path: Path) -> None:
    # Given a total budget of 2,500 bytes and 3,700 bytes of files
    home = tmp_path / "home"
    workspace = home / ".openclaw" / "workspace"
    for name, size in {"a.bin": 1000, "b.bin": 1001, "c.bin": 900, "d.bin": 800}.items():
        write(workspace / name, b"\1" * size)
    told: list[str] = []
    sync = sync_for(s3, home, limits=SyncLimits(max_total_bytes=2500), on_warning=told.append)

    # When it backs up
    report = sync.backup()

    # Then the two largest are skipped with a warning each, the rest fit the budget
    assert keys(s3) == {"manifest.json", "workspace/c.bin", "workspace/d.bin"}
    assert report.uploaded == 2
    assert len(told) == 2
    assert "'workspace/b.bin'" in told[0] and "'workspace/a.bin'" in told[1]
    assert all("backup limit" in text and "not backed up" in text for text in told)


def test_a_failed_upload_keeps_the_previous_version_and_is_retried(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up file, and S3 refusing its next upload
    home = tmp_path / "home"
    path = write(home / ".openclaw" / "workspace" / "a.md", "v1")
    write(home / ".openclaw" / "workspace" / "b.md", "b1")
    flaky = FailingPuts(s3)
    sync = sync_for(flaky, home)
    sync.backup()
    flaky.fail_keys = {PREFIX + "workspace/a.md"}

    # When both files change and the backup runs
    write(path, "v2", mtime_ns=MTIME_NS + 1)
    write(home / ".openclaw" / "workspace" / "b.md", "b2", mtime_ns=MTIME_NS + 1)
    report = sync.backup()

    # Then the failure is reported, the other file is backed up, and a new task would get v1 of a.md
    assert report.uploaded == 1 and len(report.failed) == 1 and "workspace/a.md" in report.failed[0]
    fresh = tmp_path / "fresh"
    sync_for(s3, fresh).restore()
    assert tree(fresh / ".openclaw" / "workspace") == {"a.md": b"v1", "b.md": b"b2"}

    # And once S3 accepts again, the next backup sends it
    flaky.fail_keys = set()
    retry = sync.backup()
    assert (retry.uploaded, retry.failed) == (1, [])
    fresher = tmp_path / "fresher"
    sync_for(s3, fresher).restore()
    assert (fresher / ".openclaw" / "workspace" / "a.md").read_text() == "v2"


def test_a_new_file_whose_upload_fails_is_not_listed_and_is_retried(s3: Any, tmp_path: Path) -> None:
    # Given S3 refusing the upload of a new file
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "new.md", "new")
    flaky = FailingPuts(s3)
    flaky.fail_keys = {PREFIX + "workspace/new.md"}
    sync = sync_for(flaky, home)

    # When it backs up, then S3 recovers and it backs up again
    failed = sync.backup()
    flaky.fail_keys = set()
    retried = sync.backup()

    # Then the manifest never listed a file that was not stored, and the retry stored it
    assert failed.failed and failed.uploaded == 0
    assert retried.uploaded == 1 and manifest(s3)["files"].keys() == {"workspace/new.md"}


def test_concurrent_backups_are_serialised(s3: Any, tmp_path: Path) -> None:
    # Given 200 new files
    home = tmp_path / "home"
    for i in range(200):
        write(home / ".openclaw" / "workspace" / f"f{i}.md", str(i))
    sync = sync_for(s3, home)
    reports: list[Any] = []

    # When two backups are started at the same time
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        reports.append(sync.backup())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then every file was uploaded exactly once and the manifest lists all of them
    assert sorted(r.uploaded for r in reports) == [0, 200]
    assert len(manifest(s3)["files"]) == 200


# ------------------------------------------------------------------------------------- bad manifests


def test_entries_that_escape_the_root_are_refused_and_nothing_is_written_outside(
    s3: Any, tmp_path: Path
) -> None:
    # Given a manifest with traversal, absolute, backslash and NUL keys beside one honest file
    home = tmp_path / "home"
    put_manifest(
        s3,
        {
            "workspace/../../etc/passwd": b"pwned",
            "workspace/../../../outside.txt": b"pwned",
            "workspace//tmp/absolute.txt": b"pwned",
            "/etc/passwd": b"pwned",
            "workspace/..\\..\\win.txt": b"pwned",
            "workspace/nul\x00.txt": b"pwned",
            "state/workspace/sneaky.md": b"pwned",
            "workspace/ok.md": b"fine",
        },
    )
    before = set(tmp_path.rglob("*"))

    # When the task restores
    report = sync_for(s3, home).restore()

    # Then only the honest file is written, every other entry is reported, and nothing lands outside
    assert report.files == 1
    assert len(report.skipped) == 7 and all("refused" in reason for reason in report.skipped)
    created = {p for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert created == {home / ".openclaw" / "workspace" / "ok.md"}
    assert not Path("/etc/passwd").read_bytes().startswith(b"pwned")


def test_entries_with_impossible_times_are_refused_and_the_rest_is_restored(s3: Any, tmp_path: Path) -> None:
    # Given a hand-edited manifest whose times cannot be a file's (infinite, or past what the OS can store)
    home = tmp_path / "home"
    put_manifest(
        s3,
        {
            "workspace/inf.md": b"x",
            "workspace/huge.md": b"x",
            "workspace/ns.md": b"x",
            "workspace/ok.md": b"ok",
        },
        {
            "workspace/inf.md": {"mtime": float("inf")},
            "workspace/huge.md": {"mtime": 1e300},
            "workspace/ns.md": {"mtimeNs": 2**70},
        },
    )

    # When the task restores
    report = sync_for(s3, home).restore()

    # Then those entries are refused, not a failed restore, and the honest file is there
    assert report.files == 1
    assert sorted(report.skipped) == [
        f"'workspace/{name}.md': refused (bad mtime)" for name in ("huge", "inf", "ns")
    ]
    assert (home / ".openclaw" / "workspace" / "ok.md").read_bytes() == b"ok"


def test_a_symlinked_folder_or_file_in_the_restore_target_is_refused(s3: Any, tmp_path: Path) -> None:
    # Given a restore target whose folder and file are symlinks pointing outside it
    home = tmp_path / "home"
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = write(outside / "victim.md", "original")
    workspace = home / ".openclaw" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "docs").symlink_to(outside)
    (workspace / "notes.md").symlink_to(victim)
    put_manifest(
        s3, {"workspace/docs/pwned.md": b"pwned", "workspace/notes.md": b"pwned", "workspace/a.md": b"a"}
    )

    # When the task restores
    report = sync_for(s3, home).restore()

    # Then both entries are refused and reported, the honest file is restored, the outside is untouched
    assert report.files == 1
    assert len(report.skipped) == 2 and all("symlink" in reason for reason in report.skipped)
    assert sorted(p.name for p in outside.iterdir()) == ["victim.md"]
    assert victim.read_text() == "original"
    assert (workspace / "a.md").read_text() == "a"


def test_refused_entries_are_kept_in_the_backup_not_deleted(s3: Any, tmp_path: Path) -> None:
    # Given an entry that restore refused because of a symlinked folder
    home = tmp_path / "home"
    (tmp_path / "outside").mkdir()
    workspace = home / ".openclaw" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "docs").symlink_to(tmp_path / "outside")
    put_manifest(s3, {"workspace/docs/report.md": b"precious"})
    sync = sync_for(s3, home)
    sync.restore()

    # When the task backs up
    report = sync.backup()

    # Then the refused file is not deleted from the backup
    assert report.deleted == 0
    assert "workspace/docs/report.md" in keys(s3)


def test_a_corrupted_object_is_reported_and_not_written(s3: Any, tmp_path: Path) -> None:
    # Given a manifest whose checksum or size does not match the stored objects
    home = tmp_path / "home"
    put_manifest(
        s3,
        {"workspace/bad.md": b"tampered", "workspace/short.md": b"12345", "workspace/good.md": b"good"},
        {
            "workspace/bad.md": {"sha256": hashlib.sha256(b"original").hexdigest()},
            "workspace/short.md": {"size": 9},
        },
    )
    calls = Calls(s3)

    # When the task restores
    report = sync_for(s3, home).restore()

    # Then the bad files are reported after one retry each and never appear on disk, not even half-written
    workspace = home / ".openclaw" / "workspace"
    assert tree(workspace) == {"good.md": b"good"}
    assert sorted(os.listdir(workspace)) == ["good.md"]
    assert len(report.skipped) == 2 and all("did not match" in reason for reason in report.skipped)
    assert calls.names.count("GetObject") == 1 + 1 + 2 + 2  # manifest, good, bad twice, short twice


def test_a_missing_object_is_reported_and_the_rest_is_restored(s3: Any, tmp_path: Path) -> None:
    # Given a manifest naming an object that is not in the bucket
    home = tmp_path / "home"
    put_manifest(
        s3,
        {"workspace/good.md": b"good"},
        {"workspace/lost.md": {"size": 1, "mtime": 1.0, "sha256": "0" * 64}},
    )

    # When the task restores
    report = sync_for(s3, home).restore()

    # Then the loss is reported, and the other file is there
    assert report.files == 1
    assert len(report.skipped) == 1 and "lost.md" in report.skipped[0] and "NoSuchKey" in report.skipped[0]


def test_an_unreadable_manifest_stops_the_restore_without_touching_the_disk(s3: Any, tmp_path: Path) -> None:
    # Given a manifest that is not JSON, and local files
    home = tmp_path / "home"
    write(home / ".openclaw" / "workspace" / "a.md", "local")
    s3.put_object(Bucket=BUCKET, Key=PREFIX + "manifest.json", Body=b"{not json")

    # When the task restores, Then it fails loudly rather than treating the user as new
    with pytest.raises(ManifestError):
        sync_for(s3, home).restore()
    assert (home / ".openclaw" / "workspace" / "a.md").read_text() == "local"


def test_an_invalid_user_id_or_root_name_is_rejected(s3: Any, tmp_path: Path) -> None:
    # Given / When / Then: ids and names that would change the S3 layout are refused up front
    for user in ("", "a/b", ".."):
        with pytest.raises(ValueError):
            StateSync(s3, BUCKET, user, default_roots(tmp_path))
    with pytest.raises(ValueError):
        StateSync(s3, BUCKET, USER, [SyncRoot("a/b", tmp_path)])
    with pytest.raises(ValueError):
        StateSync(s3, BUCKET, USER, [SyncRoot("x", tmp_path), SyncRoot("x", tmp_path / "y")])


# --------------------------------------------------------------------------------------------- SQLite


def _agent_db(home: Path) -> Path:
    return home / ".openclaw" / "agents" / "main" / "agent" / "openclaw-agent.sqlite"


def _live_wal_db(home: Path) -> sqlite3.Connection:
    """The agent's database, open in WAL mode with checkpoints off: committed rows stay in the -wal file."""
    db = _agent_db(home)
    db.parent.mkdir(parents=True)
    live = sqlite3.connect(db)
    live.execute("PRAGMA journal_mode=WAL")
    live.execute("PRAGMA wal_autocheckpoint=0")
    return live


def test_a_live_wal_database_is_backed_up_as_a_consistent_snapshot(s3: Any, tmp_path: Path) -> None:
    # Given a live database in WAL mode whose committed rows are still only in the -wal file,
    # and a second writer with a transaction in flight
    home = tmp_path / "home"
    db = _agent_db(home)
    live = _live_wal_db(home)
    live.execute("CREATE TABLE turns (id INTEGER PRIMARY KEY, text TEXT)")
    live.executemany("INSERT INTO turns (text) VALUES (?)", [(f"turn {i}",) for i in range(500)])
    live.commit()
    pending = sqlite3.connect(db, isolation_level=None)
    pending.execute("BEGIN IMMEDIATE")
    pending.execute("INSERT INTO turns (text) VALUES ('not committed')")
    assert Path(f"{db}-wal").stat().st_size > 0
    # (the main file alone does not have the rows yet: a plain copy of it would lose them)
    alone = tmp_path / "alone.sqlite"
    alone.write_bytes(db.read_bytes())
    with sqlite3.connect(alone) as naive:
        assert naive.execute("SELECT count(*) FROM sqlite_master WHERE name = 'turns'").fetchone() == (0,)

    try:
        # When it is backed up and restored into a fresh home
        report = sync_for(s3, home).backup()
        fresh = tmp_path / "fresh"
        sync_for(s3, fresh).restore()
    finally:
        pending.execute("ROLLBACK")
        pending.close()

    # Then the -wal/-shm were never uploaded, the snapshot came back alone, and it holds every committed row
    assert report.failed == []
    assert keys(s3) == {"manifest.json", "state/agents/main/agent/openclaw-agent.sqlite"}
    restored = _agent_db(fresh)
    assert sorted(os.listdir(restored.parent)) == ["openclaw-agent.sqlite"]
    with sqlite3.connect(restored) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*), max(text) FROM turns").fetchone() == (500, "turn 99")
    # And the manifest describes the snapshot that was uploaded
    entry = manifest(s3)["files"]["state/agents/main/agent/openclaw-agent.sqlite"]
    assert entry["sha256"] == hashlib.sha256(restored.read_bytes()).hexdigest()
    live.close()


def test_new_rows_that_only_touch_the_wal_are_detected_and_backed_up(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up live WAL database
    home = tmp_path / "home"
    live = _live_wal_db(home)
    live.execute("CREATE TABLE turns (text TEXT)")
    live.commit()
    sync = sync_for(s3, home)
    sync.backup()

    # When rows are committed (into the WAL only) and it backs up again
    live.executemany("INSERT INTO turns VALUES (?)", [("hello",), ("world",)])
    live.commit()
    report = sync.backup()
    live.close()

    # Then the database is uploaded again and a new task sees the rows
    assert report.uploaded == 1
    fresh = tmp_path / "fresh"
    sync_for(s3, fresh).restore()
    with sqlite3.connect(_agent_db(fresh)) as copy:
        assert copy.execute("SELECT count(*) FROM turns").fetchone() == (2,)


def test_restore_removes_a_stale_wal_beside_the_restored_database(s3: Any, tmp_path: Path) -> None:
    # Given a backed-up database, and a home holding an unrelated stale -wal/-shm for it
    home = tmp_path / "home"
    db = _agent_db(home)
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    sync_for(s3, home).backup()
    write(Path(f"{db}-wal"), b"stale wal from another life")
    write(Path(f"{db}-shm"), b"stale shm")

    # When the task restores
    sync_for(s3, home).restore()

    # Then the database comes back alone and opens cleanly
    assert sorted(os.listdir(db.parent)) == ["openclaw-agent.sqlite"]
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_db_named_file_that_is_not_sqlite_is_backed_up_as_is(s3: Any, tmp_path: Path) -> None:
    # Given a state file named *.db that is not a database
    home = tmp_path / "home"
    write(home / ".openclaw" / "state" / "notes.db", b"plain bytes")

    # When it is backed up and restored
    report = sync_for(s3, home).backup()
    fresh = tmp_path / "fresh"
    sync_for(s3, fresh).restore()

    # Then it survives unchanged
    assert report.failed == []
    assert (fresh / ".openclaw" / "state" / "notes.db").read_bytes() == b"plain bytes"


def test_restoring_root_by_root_never_deletes_what_is_not_down_yet(s3: Any, tmp_path: Path) -> None:
    # Given a backup with the agent's state and its workspace
    old = tmp_path / "old"
    write(old / ".openclaw" / "openclaw.json", "{}")
    write(old / ".openclaw" / "workspace" / "notes.md", "keep me")
    sync_for(s3, old).backup()

    # When a new task restores the state first (to start OpenClaw on it) and backs up before the
    # workspace is down (a run finished meanwhile)
    new = tmp_path / "new"
    sync = sync_for(s3, new)
    first = sync.restore(only={"state"})
    assert first.files == 1 and not (new / ".openclaw" / "workspace" / "notes.md").exists()
    report = sync.backup()

    # Then nothing of the workspace was deleted in S3
    assert report.deleted == 0
    assert "workspace/notes.md" in manifest(s3)["files"]

    # And once the workspace is restored too, the tree equals the backup and later backups are incremental
    second = sync.restore(only={"workspace"})
    assert second.files == 1
    assert (new / ".openclaw" / "workspace" / "notes.md").read_text() == "keep me"
    calls = Calls(s3)
    assert sync.backup().uploaded == 0
    assert "PutObject" not in calls.names
    (new / ".openclaw" / "workspace" / "notes.md").unlink()
    assert sync.backup().deleted == 1
