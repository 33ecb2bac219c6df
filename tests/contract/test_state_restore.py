"""The agent's memory survives its task: a live snapshot to S3, a fresh disk, a restore, a new gateway."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from bridge.openclaw_client import GatewayClient
from bridge.openclaw_frames import message_text
from bridge.state_sync import StateSync, default_roots
from local.offline_model import OfflineModelServer
from tests.contract.conftest import start_gateway

pytestmark = pytest.mark.contract

SESSION = "agent:main:web:restore-test"


async def test_live_snapshot_restored_into_a_new_home_keeps_history_and_files(
    tmp_path: Path, offline_model: OfflineModelServer
) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data")
        s3.put_bucket_versioning(Bucket="data", VersioningConfiguration={"Status": "Enabled"})

        # Given a gateway that talked with the user and wrote a file
        first = await start_gateway(tmp_path / "first", offline_model.url)
        client = GatewayClient(first.url, first.token)
        try:
            await client.start()
            wrote = await client.run(
                SESSION, "create file diary.md with the text day one", idempotency_key=str(uuid.uuid4())
            )
            assert wrote.state == "final", wrote
            chatted = await client.run(SESSION, "hello again", idempotency_key=str(uuid.uuid4()))
            assert chatted.state == "final", chatted

            # When its state is snapshotted to S3 while it is still running (as the bridge does)
            report = StateSync(s3, "data", "u1", default_roots(first.home)).backup()
            assert not report.failed, report
        finally:
            await client.close()
            await first.stop()

        # And restored into a brand-new home, where a new gateway starts
        fresh_home = tmp_path / "second" / "home"
        restored = StateSync(s3, "data", "u1", default_roots(fresh_home)).restore()
        assert not restored.skipped, restored
        second = await start_gateway(tmp_path / "second", offline_model.url, home=fresh_home)
        client = GatewayClient(second.url, second.token)
        try:
            await client.start()
            # Then chat.history shows the earlier turns and the workspace file is back
            history = await client.history(SESSION, limit=20)
            texts = [message_text(m) or "" for m in history]
            assert any("day one" in t or "diary.md" in t for t in texts), texts
            assert any("hello again" in t for t in texts), texts
            assert (second.workspace / "diary.md").read_text() == "day one"
            # And the agent can still use it
            shown = await client.run(SESSION, "show diary.md", idempotency_key=str(uuid.uuid4()))
            assert "day one" in shown.text
        finally:
            await client.close()
            await second.stop()
