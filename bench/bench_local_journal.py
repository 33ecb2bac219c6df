"""What the local AWS's write-ahead journal costs a write, against the snapshot-only baseline of the same run.

The journaled server is `EmbeddedAws` as `make dev` runs it (each change recorded and fsynced before moto
answers); the baseline is moto's own threaded server, as the local stack ran before the journal, serving
the very same in-memory backends. Writes alternate between the two so both see the same machine load:
a DynamoDB PutItem of a history-sized row (~1 KB) and an S3 PutObject of a 4 KB file into the versioned
data bucket. Also: how long a start takes to replay the journal these writes left, and how long a
snapshot (compaction) holds writes back. Goal: the journal adds no more than a few milliseconds per
write. Prints figures; never fails on time.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared")]
os.environ.update({"AWS_DEFAULT_REGION": "us-east-1", "LOG_LEVEL": "WARNING"})
for _name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[_name]

import boto3  # noqa: E402
from moto.backends import get_backend  # noqa: E402
from moto.core.base_backend import BackendDict  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from local.aws import EmbeddedAws  # noqa: E402
from local.moto_state import PERSISTED_SERVICES  # noqa: E402
from local.resolve import Resolver  # noqa: E402
from local.template import load_template  # noqa: E402

WRITES = int(os.environ.get("BENCH_WRITES", "300"))
TABLE = "local-Conversations"


def _client(service: str, url: str) -> Any:
    make: Any = boto3.client  # one client type for both services: the figures need only put_*
    return make(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def _row(i: int) -> dict[str, Any]:
    return {
        "PK": {"S": "USER#bench"},
        "SK": {"S": f"MSG#c#{i:06d}"},
        "role": {"S": "user"},
        "content": {"S": "x" * 900},
        "createdAt": {"N": str(time.time())},
    }


def _timed(call: Callable[..., object], **arguments: Any) -> float:
    started = time.perf_counter()
    call(**arguments)
    return (time.perf_counter() - started) * 1000


def _figures(name: str, journaled: list[float], baseline: list[float]) -> None:
    med_j, med_b = statistics.median(journaled), statistics.median(baseline)
    p95 = sorted(journaled)[int(0.95 * (len(journaled) - 1))]
    p95_b = sorted(baseline)[int(0.95 * (len(baseline) - 1))]
    print(
        f"  {name:<22} journaled median {med_j:6.2f} ms  p95 {p95:6.2f}  max {max(journaled):6.2f} | "
        f"snapshot-only median {med_b:6.2f} ms  p95 {p95_b:6.2f} | +{med_j - med_b:5.2f} ms "
        f"({med_j / med_b:.2f}×)"
    )


def main() -> None:
    """Print the figures."""
    template = load_template()
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as state:
        aws = EmbeddedAws(Path(state), 0)
        aws.start()
        aws.create_resources(Resolver(template, "local"), template)
        baseline = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        baseline.start()
        baseline_url = f"http://127.0.0.1:{baseline.get_host_and_port()[1]}"
        journaled_db, plain_db = _client("dynamodb", aws.url), _client("dynamodb", baseline_url)
        journaled_s3, plain_s3 = _client("s3", aws.url), _client("s3", baseline_url)
        body = os.urandom(4096)
        times: dict[str, list[float]] = {k: [] for k in ("put_j", "put_b", "s3_j", "s3_b")}
        for i in range(5):  # warm both paths up (connections, moto's first-request imports)
            journaled_db.put_item(TableName=TABLE, Item=_row(-1 - i))
            plain_db.put_item(TableName=TABLE, Item=_row(-1 - i))
        for i in range(WRITES):
            times["put_j"].append(_timed(journaled_db.put_item, TableName=TABLE, Item=_row(2 * i)))
            times["put_b"].append(_timed(plain_db.put_item, TableName=TABLE, Item=_row(2 * i + 1)))
            file = {"Bucket": aws.bucket, "Key": f"users/bench/workspace/f{i % 20}.md", "Body": body}
            times["s3_j"].append(_timed(journaled_s3.put_object, **file))
            times["s3_b"].append(_timed(plain_s3.put_object, **file))
        print(f"local AWS writes, {WRITES} of each, alternating journaled / snapshot-only:")
        _figures("DynamoDB PutItem 1 KB", times["put_j"], times["put_b"])
        _figures("S3 PutObject 4 KB", times["s3_j"], times["s3_b"])

        journal_bytes = sum(p.stat().st_size for p in Path(state).glob("aws-journal.*"))
        compaction = _timed(aws.snapshot)
        print(f"  snapshot (compaction of a {journal_bytes / 1e6:.1f} MB journal): {compaction:.0f} ms")

        # What a start after a crash replays: these writes again, journaled, with no snapshot after them.
        for i in range(WRITES):
            journaled_db.put_item(TableName=TABLE, Item=_row(2 * i))
            journaled_s3.put_object(Bucket=aws.bucket, Key=f"users/bench/workspace/f{i % 20}.md", Body=body)
        baseline.stop()
        if aws.server is not None:  # SIGKILL, as far as moto's state is concerned
            aws.server.stop()
            aws.server = None
        aws.journal.close()
        BackendDict.reset()
        for service in PERSISTED_SERVICES:
            get_backend(service).clear()  # type: ignore[call-overload]
        replaying = _start_in_a_new_process(Path(state))
        # The same state, compacted into the snapshot by the clean stop: a start with nothing to replay.
        compacted = _start_in_a_new_process(Path(state))
        print(
            f"  start after a crash, replaying {2 * WRITES} journaled writes: {replaying:.0f} ms "
            f"(the same state from a snapshot alone: {compacted:.0f} ms)"
        )


def _start_in_a_new_process(state: Path) -> float:
    """Empty moto as a new process finds it, then start and stop the local AWS on `state`; the start's ms."""
    BackendDict.reset()
    for service in PERSISTED_SERVICES:
        get_backend(service).clear()  # type: ignore[call-overload]
    aws = EmbeddedAws(state, 0)
    took = _timed(aws.start)
    aws.stop()
    return took


if __name__ == "__main__":
    main()
