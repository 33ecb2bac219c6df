"""The first-turn rehearsal against the real gateway: it runs on the stand-in model, never on the user's,
and the user's first message after it is answered by the user's model, once."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.openclaw_client import GatewayClient
from bridge.rehearsal import Rehearsal
from bridge.stand_in_model import PROVIDER_ID, StandInModel, provider_entry
from local.offline_model import OfflineModelServer
from tests.contract.conftest import start_gateway


async def _never() -> bool:
    return False


async def test_the_rehearsal_runs_on_the_stand_in_and_the_first_message_on_the_users_model(
    tmp_path: Path, offline_model: OfflineModelServer
) -> None:
    # Given the real gateway, configured for the user's model (the offline model) and the stand-in beside it
    with StandInModel() as stand_in:
        gateway = await start_gateway(
            tmp_path, offline_model.url, providers={PROVIDER_ID: provider_entry(stand_in)}
        )
        client = GatewayClient(gateway.url, gateway.token, run_timeout=240)
        try:
            await client.start()
            asked_before = len(offline_model.recent_requests)

            # When the bridge rehearses the first turn and waits for it
            rehearsal = Rehearsal(client)
            started = time.monotonic()
            rehearsal.begin()
            await rehearsal.until_done_or(_never, wait=240)
            rehearsed = time.monotonic() - started

            # Then the stand-in answered it and the user's model was not asked anything
            assert rehearsal.outcome == "done", rehearsal.outcome
            assert stand_in.requests >= 1
            assert len(offline_model.recent_requests) == asked_before

            # When the user's first message comes
            started = time.monotonic()
            reply = await client.run(
                "agent:main:conversation:first", "hello there", idempotency_key="m-first"
            )
            answered = time.monotonic() - started

            # Then the user's model answered it, and the stand-in was not asked again
            assert reply.state == "final" and reply.text
            assert len(offline_model.recent_requests) == asked_before + 1
            assert stand_in.requests == 1
            print(f"rehearsal {rehearsed:.1f} s, first message after it {answered:.1f} s")
        finally:
            await client.close()
            await gateway.stop()
