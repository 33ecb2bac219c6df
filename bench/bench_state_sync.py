"""Restore and incremental backup of the agent's state, against a naive baseline measured in the same run.

The baseline is what earlier bridges did: one object at a time, sequentially, and a full re-upload on
every backup. Both talk to the same in-process moto S3; each S3 request also waits an emulated network
round trip (BENCH_RTT_MS, default 15 ms — same-region S3 first-byte latency) so parallelism is measured
against a realistic cost, not against moto's in-process speed alone (also printed, with RTT 0).
Goals: restore ≥ 5× faster than the baseline; a backup after changing one file of 5,000 makes ≤ 3 requests.
Prints figures; never fails on time.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]
os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "LOG_LEVEL": "WARNING",
    }
)
for _name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
    del os.environ[_name]

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto import mock_aws  # noqa: E402

from bridge.state_sync import StateSync, SyncRoot  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FILES = int(os.environ.get("BENCH_FILES", "1000"))
TOTAL_MB = int(os.environ.get("BENCH_MB", "50"))
BIG_FILES = int(os.environ.get("BENCH_BACKUP_FILES", "5000"))


def _s3(rtt_ms: float, counter: list[int]) -> S3Client:
    client = boto3.client("s3", region_name="us-east-1", config=Config(max_pool_connections=32))

    def delay(**_: Any) -> None:
        counter[0] += 1
        if rtt_ms:
            time.sleep(rtt_ms / 1000)

    client.meta.events.register("before-send.s3", delay)
    return client


def _make_tree(root: Path, files: int, total_bytes: int) -> None:
    size = total_bytes // files
    for n in range(files):
        path = root / f"dir{n % 20:02d}" / f"file{n:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def _naive_upload(s3: S3Client, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.put_object(Bucket="data", Key=f"{prefix}/{path.relative_to(root)}", Body=path.read_bytes())


def _naive_restore(s3: S3Client, target: Path, prefix: str) -> None:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket="data", Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            dest = target / obj["Key"][len(prefix) + 1 :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(s3.get_object(Bucket="data", Key=obj["Key"])["Body"].read())


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def run(rtt_ms: float, work: Path) -> None:
    with mock_aws():
        counter = [0]
        s3 = _s3(rtt_ms, counter)
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})
        source = work / "source"
        _make_tree(source, FILES, TOTAL_MB * 1024 * 1024)
        StateSync(s3, "data", "ours", [SyncRoot("workspace", source)]).backup()
        _naive_upload(s3, source, "naive")

        t_ours, report = _timed(
            lambda: StateSync(s3, "data", "ours", [SyncRoot("workspace", work / "ours")]).restore()
        )
        t_naive, _ = _timed(lambda: _naive_restore(s3, work / "naive", "naive"))
        assert report.files == FILES, report
        print(f"  restore {FILES} files / {TOTAL_MB} MB, RTT {rtt_ms:g} ms:")
        print(f"    ours (parallel, manifest)   {t_ours:7.2f} s")
        print(f"    naive (sequential listing)  {t_naive:7.2f} s   → ours is {t_naive / t_ours:.1f}× faster")


def backup_requests(work: Path) -> None:
    with mock_aws():
        counter = [0]
        s3 = _s3(0, counter)
        s3.create_bucket(Bucket="data")
        tree = work / "many"
        _make_tree(tree, BIG_FILES, BIG_FILES * 512)
        sync = StateSync(s3, "data", "u", [SyncRoot("workspace", tree)])
        t_full, _ = _timed(sync.backup)
        (tree / "dir03" / "file00003.bin").write_bytes(b"changed")
        counter[0] = 0
        t_one, report = _timed(sync.backup)
        ours = counter[0]
        counter[0] = 0
        t_naive, _ = _timed(lambda: _naive_upload(s3, tree, "naive"))
        print(f"  backup after changing 1 file of {BIG_FILES}:")
        print(f"    ours   {ours} S3 requests ({report.uploaded} uploaded) in {t_one:.2f} s (goal ≤ 3)")
        print(f"    naive  {counter[0]} S3 requests (full re-upload) in {t_naive:.2f} s")
        print(f"    (first full backup of the {BIG_FILES} files: {t_full:.2f} s)")


def main() -> None:
    print("state sync (bench/bench_state_sync.py)")
    for rtt in (0.0, float(os.environ.get("BENCH_RTT_MS", "15"))):
        work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
        try:
            run(rtt, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        backup_requests(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
