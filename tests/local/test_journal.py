"""The write-ahead journal of the local AWS: what was synced comes back in order, torn tails are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local.aws import EmbeddedAws
from local.journal import Journal
from local.resolve import Resolver
from tests.local.conftest import crash, started


def written(directory: Path, *records: bytes) -> Journal:
    """A journal of one generation holding `records`, synced, as a crashed stack leaves it."""
    journal = Journal(directory)
    journal.open(0)
    for record in records:
        journal.sync(journal.append(record))
    journal.close()
    return journal


def test_records_come_back_in_the_order_they_were_written(tmp_path: Path) -> None:
    # Given records appended and synced, and the journal closed as a killed process would leave it
    written(tmp_path, b"first", b"", b"third" * 1000)

    # When a new process replays it
    # Then it gets every record, in order, byte for byte
    assert list(Journal(tmp_path).replay(0)) == [b"first", b"", b"third" * 1000]


@pytest.mark.parametrize(
    "torn",
    [
        pytest.param(lambda whole: whole[:3], id="half a header"),
        pytest.param(lambda whole: whole[:10], id="half a payload"),
        pytest.param(lambda whole: whole[:-1] + bytes([whole[-1] ^ 1]), id="a payload that does not match"),
        pytest.param(lambda whole: b"\xff\xff\xff\xff" + whole[4:], id="a nonsense length"),
    ],
)
def test_a_torn_last_record_is_dropped_and_the_journal_goes_on_after_the_last_whole_one(
    tmp_path: Path, torn: Any
) -> None:
    # Given a journal whose last append was cut short by a crash
    written(tmp_path, b"acknowledged")
    path = tmp_path / "aws-journal.0"
    whole_size = path.stat().st_size
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    written(scratch, b"never acknowledged")
    with path.open("ab") as out:
        out.write(torn((scratch / "aws-journal.0").read_bytes()))

    # When it is replayed
    journal = Journal(tmp_path)
    replayed = list(journal.replay(0))

    # Then the whole record comes back, the torn one does not, and the torn bytes are gone from the file ...
    assert replayed == [b"acknowledged"]
    assert path.stat().st_size == whole_size
    # ... so a record appended afterwards is read back after the first
    journal.open(0)
    journal.sync(journal.append(b"after the crash"))
    journal.close()
    assert list(Journal(tmp_path).replay(0)) == [b"acknowledged", b"after the crash"]


def test_compaction_leaves_only_what_the_snapshot_does_not_hold(tmp_path: Path) -> None:
    # Given records in generation 0
    journal = written(tmp_path, b"in the snapshot")
    journal.open(0)

    # When a snapshot is taken: a new generation starts, and then the older files are removed
    generation = journal.rotate()
    journal.sync(journal.append(b"after the snapshot"))
    journal.remove_before(generation)
    journal.close()

    # Then replaying from the snapshot's generation gives only the later record, and the old file is gone
    assert generation == 1
    assert list(Journal(tmp_path).replay(generation)) == [b"after the snapshot"]
    assert Journal(tmp_path).generations() == [1]


def test_a_crash_between_rotation_and_snapshot_replays_both_generations(tmp_path: Path) -> None:
    # Given a journal rotated for a snapshot that was never written (the stack died in between)
    journal = written(tmp_path, b"before")
    journal.open(0)
    journal.rotate()
    journal.sync(journal.append(b"after"))
    journal.close()

    # When the stack replays from the old snapshot's generation
    # Then it gets both generations, in order
    assert list(Journal(tmp_path).replay(0)) == [b"before", b"after"]


def test_the_stack_compacts_its_journal_into_the_snapshot_and_starts_despite_a_torn_tail(
    template: dict[str, Any], tmp_path: Path, fresh_moto: None
) -> None:
    # Given a running stack that wrote an item, took a snapshot, then wrote another item
    first = started(tmp_path, template)
    dynamodb = first.client("dynamodb")

    def put(sk: str) -> None:
        dynamodb.put_item(TableName="local-Conversations", Item={"PK": {"S": "USER#u"}, "SK": {"S": sk}})

    put("CONV#1")
    assert first.snapshot()
    journals = sorted(p.name for p in tmp_path.glob("aws-journal.*"))
    put("CONV#2")
    # ... and was killed in the middle of appending its next record
    crash(first)
    [current] = journals
    with (tmp_path / current).open("ab") as out:
        out.write(b"\x00\x00\x01\x00torn")

    # When it starts again
    second = EmbeddedAws(tmp_path, 0)
    second.start()
    try:
        # Then the snapshot compacted the journal (only the generation after it is left) ...
        assert journals == [p.name for p in tmp_path.glob("aws-journal.*")]
        # ... and both items are there: one from the snapshot, one from the journal after it
        second.create_resources(Resolver(template, "local"), template)
        items = second.client("dynamodb").query(
            TableName="local-Conversations",
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "USER#u"}},
        )["Items"]
        assert [i["SK"]["S"] for i in items] == ["CONV#1", "CONV#2"]
    finally:
        second.stop()
    # ... and a clean stop leaves a snapshot and an empty journal
    assert all(p.stat().st_size == 0 for p in tmp_path.glob("aws-journal.*"))
