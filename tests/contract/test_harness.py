"""The contract tier's own harness: what its tests take for granted about their stand-ins."""

from __future__ import annotations

from tests.contract.harness import MotoServer


def test_a_moto_server_started_after_another_in_the_same_worker_starts_empty() -> None:
    # Given a moto server whose tables and bucket were made and written to, then stopped
    first = MotoServer()
    first.start()
    first.client("s3").put_object(Bucket=first.bucket, Key="left-over", Body=b"x")
    first.stop()

    # When a module's fixture starts another one later in the same process (moto's state is per process)
    second = MotoServer()
    try:
        second.start()

        # Then it has the template's tables and an empty bucket, not the first one's
        assert sorted(second.tables) == sorted(first.tables)
        assert second.client("s3").list_objects_v2(Bucket=second.bucket).get("KeyCount") == 0
    finally:
        second.stop()
