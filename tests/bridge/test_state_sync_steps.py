"""The steps of a backup (plan, upload, commit) and of a restore (plan, remove strays, fetch, adopt), alone.

The S3 side is a fake client behind the real store: it keeps versions in memory, records every operation
and can refuse chosen ones, so each test sees exactly which requests a step makes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bridge.state_sync import MANIFEST_VERSION, ManifestError, SyncLimits, SyncRoot, default_roots
from bridge.state_sync.backup import BackupPlan, Outcome, commit, plan_backup, settle, upload
from bridge.state_sync.inventory import NO_FILE, LocalFile
from bridge.state_sync.ledger import Ledger
from bridge.state_sync.manifest import Entry, parse_manifest, serialise_manifest
from bridge.state_sync.restore import Fetched, adopt, fetch, plan_restore, remove_strays
from bridge.state_sync.roots import Roots
from bridge.state_sync.store import BackupStore

MTIME_NS = 1_790_000_000_123_456_789
WORKSPACE = SyncRoot("workspace", Path("/nonexistent/workspace"))
PREFIX = "users/u1/"


class FakeBody:
    """A streaming body: read whole or in chunks, then closed."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.closed = False

    def read(self) -> bytes:
        return self._data

    def iter_chunks(self, size: int) -> Iterator[bytes]:
        for start in range(0, len(self._data), size):
            yield self._data[start : start + size]

    def close(self) -> None:
        self.closed = True


class FakeS3:
    """Versioned objects in memory; every operation is recorded, and those in `refuse` fail with SlowDown."""

    def __init__(self) -> None:
        self.versions: dict[str, list[tuple[str, bytes]]] = {}
        self.calls: list[str] = []
        self.refuse: set[str] = set()

    def _call(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.refuse:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, operation)

    def put_object(self, **request: Any) -> dict[str, Any]:
        self._call("PutObject")
        body = request["Body"]
        versions = self.versions.setdefault(request["Key"], [])
        versions.append((f"v{len(versions) + 1}", body if isinstance(body, bytes) else body.read()))
        return {"VersionId": versions[-1][0]}

    def get_object(self, **request: Any) -> dict[str, Any]:
        self._call("GetObject")
        versions = dict(self.versions.get(request["Key"], []))
        if not versions:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no such key"}}, "GetObject")
        return {"Body": FakeBody(versions[request.get("VersionId", list(versions)[-1])])}

    def delete_objects(self, **request: Any) -> dict[str, Any]:
        self._call("DeleteObjects")
        for item in request["Delete"]["Objects"]:
            self.versions.pop(item["Key"], None)
        return {}

    def latest(self, key: str) -> bytes:
        return self.versions[PREFIX + key][-1][1]

    def manifest(self) -> dict[str, Any]:
        files: dict[str, Any] = json.loads(self.latest("manifest.json"))["files"]
        return files


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


def store_for(s3: FakeS3) -> BackupStore:
    return BackupStore(s3, "data", "u1")


def entry(data: bytes = b"old", version_id: str | None = "v1") -> Entry:
    return Entry(len(data), MTIME_NS, hashlib.sha256(data).hexdigest(), version_id, 0o644)


def local(key: str, size: int = 3, mtime_ns: int = MTIME_NS, path: Path | None = None) -> LocalFile:
    """A scanned file; by default at a path that does not exist, so a step that reads it fails loudly."""
    return LocalFile(
        key=key,
        root=WORKSPACE,
        path=path or WORKSPACE.path / key.split("/", 1)[1],
        size=size,
        mtime_ns=mtime_ns,
        mode=0o644,
        signature=(size, mtime_ns, NO_FILE, NO_FILE),
        sqlite=False,
    )


def on_disk(tmp_path: Path, key: str, data: bytes, mtime_ns: int = MTIME_NS) -> LocalFile:
    path = tmp_path / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return local(key, size=len(data), mtime_ns=mtime_ns, path=path)


def plan_of(
    files: list[LocalFile], known: dict[str, Entry], *, changed: list[str], over_limit: Collection[str] = ()
) -> BackupPlan:
    by_key = {f.key: f for f in files}
    return BackupPlan(known, by_key, [by_key[k] for k in changed], set(over_limit), [])


# ------------------------------------------------------------------------------------------ backup: plan


def test_the_plan_uploads_new_and_changed_files_and_nothing_else() -> None:
    # Given a manifest of two files, one of them unchanged since and one edited, and a new file
    known = {"workspace/same.md": entry(), "workspace/edited.md": entry()}
    signatures = dict.fromkeys(known, (3, MTIME_NS, NO_FILE, NO_FILE))
    scanned = {
        f.key: f
        for f in (local("workspace/same.md"), local("workspace/edited.md", size=4), local("workspace/new.md"))
    }

    # When the backup is planned (the files are not on disk: planning never reads them)
    plan = plan_backup(scanned, known, signatures, SyncLimits())

    # Then only the edited and the new file are to be uploaded
    assert [f.key for f in plan.changed] == ["workspace/edited.md", "workspace/new.md"]
    assert set(plan.local) == set(scanned) and plan.over_limit == set() and plan.warnings == []


def test_a_known_file_without_a_trusted_signature_is_hashed_again() -> None:
    # Given a known database whose signature was not trusted from the manifest (databases are re-snapshotted)
    known = {"workspace/agent.sqlite": entry()}

    # When the backup is planned
    plan = plan_backup({"workspace/agent.sqlite": local("workspace/agent.sqlite")}, known, {}, SyncLimits())

    # Then the file is to be hashed (and uploaded only if its content differs)
    assert [f.key for f in plan.changed] == ["workspace/agent.sqlite"]


def test_the_plan_leaves_out_what_exceeds_the_limits_and_says_so() -> None:
    # Given a file over the per-file limit, and three that together exceed the total
    scanned = {
        f.key: f
        for f in (
            local("workspace/huge.bin", size=5000),
            local("workspace/a.bin", size=900),
            local("workspace/b.bin", size=800),
            local("workspace/c.bin", size=700),
        )
    }

    # When the backup is planned with a 1,000-byte per-file and a 2,000-byte total limit
    plan = plan_backup(scanned, {}, {}, SyncLimits(max_file_bytes=1000, max_total_bytes=2000))

    # Then the huge file and the largest of the rest are left out, each with a warning
    assert set(plan.local) == {"workspace/b.bin", "workspace/c.bin"}
    assert plan.over_limit == {"workspace/huge.bin", "workspace/a.bin"}
    assert plan.warnings == [
        "'workspace/huge.bin' (4.9 KiB) is larger than the 1000 bytes per-file limit and was not backed up.",
        "'workspace/a.bin' (900 bytes) was not backed up: your files together are larger than the "
        "2.0 KiB backup limit.",
    ]


# ------------------------------------------------------------------------------- backup: commit decisions


def test_a_failed_upload_keeps_the_previous_entry_and_a_failed_new_file_is_not_listed() -> None:
    # Given an edited known file and a new file, both of whose uploads failed
    known = {"workspace/edited.md": entry()}
    files = [local("workspace/edited.md", size=4), local("workspace/new.md")]
    plan = plan_of(files, known, changed=["workspace/edited.md", "workspace/new.md"])
    outcomes = [
        Outcome("workspace/edited.md", requests=1, error="upload failed (SlowDown)"),
        Outcome("workspace/new.md", requests=1, error="upload failed (SlowDown)"),
    ]

    # When the new manifest is settled
    settled = settle(plan, outcomes, set(), {"workspace"})

    # Then the edited file keeps its previous backup, the new file is not listed, both are reported
    assert settled.files == {"workspace/edited.md": known["workspace/edited.md"]}
    assert settled.failed == [
        "workspace/edited.md: upload failed (SlowDown)",
        "workspace/new.md: upload failed (SlowDown)",
    ]
    assert settled.gone == set() and settled.requests == 2 and settled.uploaded == 0


def test_entries_without_a_local_file_are_kept_unless_the_file_is_really_gone() -> None:
    # Given known entries with no local file: one restore could not write, one over the limits, one of a
    # root whose folder is missing, one of a root this bridge does not sync, and one whose file was deleted
    known = {
        "workspace/unrestored.md": entry(),
        "workspace/too-big.bin": entry(),
        "state/openclaw.json": entry(),
        "elsewhere/notes.md": entry(),
        "workspace/deleted.md": entry(),
    }
    plan = plan_of([], known, changed=[], over_limit={"workspace/too-big.bin"})

    # When the new manifest is settled with only the workspace folder present
    settled = settle(plan, [], {"workspace/unrestored.md"}, {"workspace"})

    # Then only the deleted file is gone; every other entry is carried over as it was
    assert settled.gone == {"workspace/deleted.md"}
    assert settled.files == {k: v for k, v in known.items() if k != "workspace/deleted.md"}


def test_uploads_and_touched_files_are_counted_apart() -> None:
    # Given an unchanged file, an uploaded one, and a touched one whose content was already stored
    known = {"workspace/same.md": entry(), "workspace/touched.md": entry()}
    files = [local("workspace/same.md"), local("workspace/up.md"), local("workspace/touched.md", mtime_ns=9)]
    plan = plan_of(files, known, changed=["workspace/up.md", "workspace/touched.md"])
    uploaded = entry(b"new", "v7")
    touched = Entry(3, 9, known["workspace/touched.md"].sha256, "v1", 0o644)
    outcomes = [
        Outcome("workspace/up.md", entry=uploaded, uploaded=True, bytes=3, requests=1),
        Outcome("workspace/touched.md", entry=touched),
    ]

    # When the new manifest is settled
    settled = settle(plan, outcomes, set(), {"workspace"})

    # Then one file was uploaded, two are unchanged, and the touched one records its new mtime
    assert (settled.uploaded, settled.unchanged, settled.bytes, settled.requests) == (1, 2, 3, 1)
    assert settled.files == {
        "workspace/same.md": known["workspace/same.md"],
        "workspace/up.md": uploaded,
        "workspace/touched.md": touched,
    }
    assert settled.signatures["workspace/touched.md"] == (3, 9, NO_FILE, NO_FILE)


# ------------------------------------------------------------------------------------ backup: commit


def test_commit_deletes_what_is_gone_then_writes_the_manifest_and_the_ledger_follows(s3: FakeS3) -> None:
    # Given a backup that knew two files, one of which is gone, and a new file just uploaded
    known = {"workspace/kept.md": entry(), "workspace/gone.md": entry()}
    ledger = Ledger(known=dict(known), signatures={"workspace/kept.md": (3, MTIME_NS, NO_FILE, NO_FILE)})
    plan = plan_of(
        [local("workspace/kept.md"), local("workspace/new.md")], known, changed=["workspace/new.md"]
    )
    new = entry(b"new", "v1")
    outcomes = [Outcome("workspace/new.md", entry=new, uploaded=True, bytes=3, requests=1)]

    # When it commits
    settled = commit(store_for(s3), ledger, plan, outcomes, {"workspace"})

    # Then the gone file's object is deleted before the manifest is written, and the manifest lists the rest
    assert s3.calls == ["DeleteObjects", "PutObject"]
    assert settled.written and (settled.deleted, settled.requests) == (1, 3)
    assert s3.manifest() == {"workspace/kept.md": entry().to_json(), "workspace/new.md": new.to_json()}
    # And the ledger now knows that manifest, with nothing left to delete
    assert ledger.known == {"workspace/kept.md": entry(), "workspace/new.md": new}
    assert set(ledger.signatures) == {"workspace/kept.md", "workspace/new.md"}
    assert ledger.pending_deletes == set()


def test_when_the_manifest_cannot_be_written_the_previous_one_stays_known(s3: FakeS3) -> None:
    # Given a new file uploaded, and S3 refusing the manifest
    ledger = Ledger(known={})
    plan = plan_of([local("workspace/new.md")], {}, changed=["workspace/new.md"])
    outcomes = [Outcome("workspace/new.md", entry=entry(), uploaded=True, bytes=3, requests=1)]
    s3.refuse = {"PutObject"}

    # When it commits
    settled = commit(store_for(s3), ledger, plan, outcomes, {"workspace"})

    # Then the failure is reported and the ledger still knows the previous manifest, so the next backup
    # uploads the file again
    assert not settled.written and settled.failed == ["manifest.json: SlowDown"]
    assert ledger.known == {} and ledger.signatures == {}


def test_a_delete_that_failed_is_retried_by_the_next_commit(s3: FakeS3) -> None:
    # Given a known file that is gone, and S3 refusing deletes at first
    known = {"workspace/gone.md": entry()}
    ledger = Ledger(known=dict(known))
    s3.refuse = {"DeleteObjects"}
    first = commit(store_for(s3), ledger, plan_of([], known, changed=[]), [], {"workspace"})

    # When the next backup, which no longer knows the file, commits with S3 accepting again
    s3.refuse = set()
    s3.calls.clear()
    second = commit(store_for(s3), ledger, plan_of([], ledger.known or {}, changed=[]), [], {"workspace"})

    # Then the first reported the failure, the second deleted the object and had no manifest to rewrite
    assert first.failed == ["workspace/gone.md: delete failed (SlowDown)"] and first.deleted == 0
    assert (second.deleted, second.failed, s3.calls) == (1, [], ["DeleteObjects"])
    assert ledger.pending_deletes == set()


def test_a_commit_with_nothing_changed_sends_nothing(s3: FakeS3) -> None:
    # Given a backup whose only file is unchanged
    known = {"workspace/same.md": entry()}
    ledger = Ledger(known=dict(known))

    # When it commits
    settled = commit(
        store_for(s3), ledger, plan_of([local("workspace/same.md")], known, changed=[]), [], set()
    )

    # Then no request is made
    assert s3.calls == [] and settled.written and (settled.unchanged, settled.requests) == (1, 0)


# ------------------------------------------------------------------------------------ backup: upload


def test_upload_sends_new_content_and_only_records_a_touched_file(s3: FakeS3, tmp_path: Path) -> None:
    # Given an edited file and a file touched without changing its content
    edited = on_disk(tmp_path, "workspace/edited.md", b"edited")
    touched = on_disk(tmp_path, "workspace/touched.md", b"old", mtime_ns=MTIME_NS + 1)
    known = {"workspace/edited.md": entry(), "workspace/touched.md": entry()}
    plan = plan_of([edited, touched], known, changed=["workspace/edited.md", "workspace/touched.md"])

    # When the changed files are uploaded
    outcomes = upload(store_for(s3), plan, workers=2)

    # Then one object is sent, with the file's bytes, and the touched file keeps its stored version
    assert s3.calls == ["PutObject"] and s3.latest("workspace/edited.md") == b"edited"
    assert [(o.key, o.uploaded, o.requests) for o in outcomes] == [
        ("workspace/edited.md", True, 1),
        ("workspace/touched.md", False, 0),
    ]
    assert outcomes[0].entry == Entry(6, MTIME_NS, hashlib.sha256(b"edited").hexdigest(), "v1", 0o644)
    assert outcomes[1].entry == Entry(3, MTIME_NS + 1, entry().sha256, "v1", 0o644)


def test_an_upload_that_fails_is_an_outcome_not_an_exception(s3: FakeS3, tmp_path: Path) -> None:
    # Given a new file, a file that vanished since the scan, and S3 refusing uploads
    new = on_disk(tmp_path, "workspace/new.md", b"new")
    vanished = local("workspace/vanished.md", path=tmp_path / "workspace" / "vanished.md")
    s3.refuse = {"PutObject"}

    # When they are uploaded
    outcomes = upload(store_for(s3), plan_of([new, vanished], {}, changed=[new.key, vanished.key]), workers=1)

    # Then each has an error and no entry
    assert [(o.entry, o.error, o.requests) for o in outcomes] == [
        (None, "upload failed (SlowDown)", 1),
        (None, "it disappeared while being backed up", 0),
    ]


# ----------------------------------------------------------------------------------------------- restore


def test_the_restore_plan_places_the_restored_roots_and_refuses_what_would_escape() -> None:
    # Given a manifest with files of both roots, of a root not synced here, and unsafe or broken entries
    roots = Roots(default_roots(Path("/nonexistent/home")))
    good = entry().to_json()
    manifest = {
        "workspace/notes.md": good,
        "state/openclaw.json": good,
        "elsewhere/x.md": good,
        "workspace/../../etc/passwd": good,
        "state/cache/ui.js": good,
        "workspace/bad.md": {**good, "sha256": "nope"},
    }

    # When a restore of the workspace alone is planned
    plan = plan_restore(manifest, roots, {"workspace"})

    # Then only the workspace file is placed, every valid entry is known, and each refusal says why
    assert {key: (p.root.name, p.rel) for key, p in plan.placements.items()} == {
        "workspace/notes.md": ("workspace", "notes.md")
    }
    assert set(plan.known) == {"workspace/notes.md", "state/openclaw.json", "elsewhere/x.md"}
    assert plan.refused == [
        "'workspace/../../etc/passwd': refused (path escapes its root)",
        "'state/cache/ui.js': refused (excluded from sync)",
        "'workspace/bad.md': refused (bad sha256)",
    ]


def test_adopting_a_partial_restore_keeps_what_was_known_of_the_other_root() -> None:
    # Given a ledger that restored the state root (one entry of it failed), then restores the workspace
    roots = Roots(default_roots(Path("/nonexistent/home")))
    state_sig = (1, 1, NO_FILE, NO_FILE)
    ledger = Ledger(
        known={},
        signatures={"state/openclaw.json": state_sig},
        unrestored={"state/broken.json", "workspace/notes.md"},
        restored_roots={"state", "workspace"},
    )
    manifest = {
        key: entry().to_json()
        for key in (
            "state/openclaw.json",
            "state/broken.json",
            "workspace/notes.md",
            "workspace/lost.md",
            "elsewhere/x.md",
        )
    }
    plan = plan_restore(manifest, roots, {"workspace"})
    fetched = Fetched(
        signatures={"workspace/notes.md": (3, MTIME_NS, NO_FILE, NO_FILE)}, failed={"workspace/lost.md"}
    )

    # When the workspace restore is adopted
    adopt(ledger, plan, fetched, {"workspace"}, roots, partial=True)

    # Then the state root's signature and failure are kept beside the workspace's, and what could not be
    # restored, or is not synced here, is unrestored (no backup deletes it)
    assert ledger.known == plan.known
    assert ledger.signatures == {"state/openclaw.json": state_sig, **fetched.signatures}
    assert ledger.unrestored == {"state/broken.json", "workspace/lost.md", "elsewhere/x.md"}


def test_remove_strays_deletes_unlisted_files_with_a_databases_side_files_but_not_excluded_ones(
    tmp_path: Path,
) -> None:
    # Given a state root with a listed file, an unlisted database with its WAL, and an excluded cache
    roots = Roots(default_roots(tmp_path))
    state = tmp_path / ".openclaw"
    for name in ("openclaw.json", "old.sqlite", "old.sqlite-wal", "old.sqlite-journal", "cache/ui.js"):
        (state / name).parent.mkdir(parents=True, exist_ok=True)
        (state / name).write_text(name)

    # When strays are removed against a manifest listing only openclaw.json
    remove_strays(roots["state"], roots, {"state/openclaw.json"})

    # Then the database went with its side files, and the listed and the excluded files stayed
    assert sorted(p.relative_to(state).as_posix() for p in state.rglob("*") if p.is_file()) == [
        "cache/ui.js",
        "openclaw.json",
    ]


def test_fetch_writes_verified_files_and_skips_a_mismatch_after_one_retry(s3: FakeS3, tmp_path: Path) -> None:
    # Given two stored objects, one of which does not match its manifest entry
    s3.versions = {
        PREFIX + "workspace/good.md": [("v1", b"old")],
        PREFIX + "workspace/bad.md": [("v1", b"bad")],
    }
    roots = Roots(default_roots(tmp_path))
    plan = plan_restore(
        {"workspace/good.md": entry().to_json(), "workspace/bad.md": entry().to_json()}, roots, {"workspace"}
    )

    # When they are fetched
    fetched = fetch(store_for(s3), plan.placements, workers=2)

    # Then the good file is on disk with its mtime, the bad one is skipped after two tries and not written
    workspace = tmp_path / ".openclaw" / "workspace"
    assert sorted(os.listdir(workspace)) == ["good.md"]
    assert (workspace / "good.md").stat().st_mtime_ns == MTIME_NS
    assert fetched.signatures == {"workspace/good.md": (3, MTIME_NS, NO_FILE, NO_FILE)}
    assert fetched.skipped == ["'workspace/bad.md': download did not match the manifest (sha256 differs)"]
    assert (fetched.files, fetched.bytes, s3.calls.count("GetObject")) == (1, 3, 3)


# ---------------------------------------------------------------------------------------------- manifest


def test_a_manifest_round_trips_sorted_and_compact() -> None:
    # Given two entries, one without a version id
    files = {"workspace/b.md": entry(b"b", None), "workspace/a.md": entry(b"a")}

    # When the manifest is serialised and parsed back
    document = serialise_manifest(files, 1_790_000_000.5)
    parsed = parse_manifest(document, "manifest.json")

    # Then it is compact JSON in key order and every entry comes back equal
    assert document.startswith(b'{"version":1,"createdAt":1790000000.5,"files":{"workspace/a.md":{"size":1,')
    assert list(parsed) == ["workspace/a.md", "workspace/b.md"]
    assert {key: Entry.from_json(raw) for key, raw in parsed.items()} == files
    assert "versionId" not in parsed["workspace/b.md"]


def test_an_entry_is_refused_by_its_first_bad_field_and_old_entries_fall_back_to_float_mtime() -> None:
    good = entry().to_json()
    # Given / When / Then: each broken field is named
    for broken, reason in (
        ([], "entry is not an object"),
        ({**good, "size": -1}, "bad size"),
        ({**good, "size": True}, "bad size"),
        ({**good, "sha256": "A" * 64}, "bad sha256"),
        ({key: v for key, v in good.items() if key not in ("mtime", "mtimeNs")}, "bad mtime"),
        ({**good, "mode": "644"}, "bad mode"),
        ({**good, "versionId": 7}, "bad versionId"),
    ):
        with pytest.raises(ValueError, match=f"^{reason}$"):
            Entry.from_json(broken)
    # And an entry with only a float mtime and no mode gets the default mode
    legacy = Entry.from_json({"size": 3, "sha256": good["sha256"], "mtime": 1.5})
    assert (legacy.mtime_ns, legacy.mode, legacy.version_id) == (1_500_000_000, 0o644, None)


def test_a_document_that_is_not_a_manifest_is_refused_whole() -> None:
    # Given / When / Then
    for document, message in (
        (b"{not json", "m.json is not JSON"),
        (
            json.dumps({"version": MANIFEST_VERSION + 1, "files": {}}).encode(),
            "m.json is not a version 1 manifest",
        ),
        (json.dumps({"version": MANIFEST_VERSION}).encode(), "m.json has no files"),
    ):
        with pytest.raises(ManifestError, match=f"^{message}$"):
            parse_manifest(document, "m.json")
