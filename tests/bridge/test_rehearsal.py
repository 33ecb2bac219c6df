"""The first turn rehearsed on the stand-in model: never on the user's model, never in a message's way."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bridge.openclaw_frames import GatewayError
from bridge.rehearsal import REHEARSAL_SESSION, GivingWay, Rehearsal
from bridge.stand_in_model import MODEL_ID, PROVIDER_ID, StandInModel, provider_entry
from tests.bridge.test_app import Reply


@dataclass
class OpenClawSessions:
    """The gateway as the rehearsal sees it: `sessions.patch` puts a session on a model (`moves_to`, as
    OpenClaw reports it back), runs are answered, the rehearsal's own run hangs until it is aborted when
    `rehearsal_hangs`."""

    moves_to: tuple[str, str] = (PROVIDER_ID, MODEL_ID)
    rehearsal_hangs: bool = False
    patch_fails: bool = False
    runs: list[tuple[str, str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self, method: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        if self.patch_fails:
            raise GatewayError("UNAVAILABLE", "the gateway is still starting", retryable=True)
        assert method == "sessions.patch"
        self.models[params["key"]] = "/".join(self.moves_to)
        provider, model = self.moves_to
        return {"ok": True, "key": params["key"], "resolved": {"modelProvider": provider, "model": model}}

    async def run(self, session_key: str, message: str, **options: Any) -> Reply:
        self.runs.append((session_key, self.models.get(session_key, "the user's model")))
        if session_key == REHEARSAL_SESSION and self.rehearsal_hangs:
            await self._released.wait()
            return Reply("aborted", "")
        return Reply("final", f"echo: {message}")

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        self.aborted.append(session_key)
        self._released.set()
        return True


async def _never() -> bool:
    return False


async def test_the_rehearsal_runs_one_turn_on_the_stand_in_model_and_nothing_on_the_users() -> None:
    # Given the gateway, and a rehearsal begun after the handshake
    gateway = OpenClawSessions()
    rehearsal = Rehearsal(gateway)

    # When it begins and nobody writes meanwhile
    rehearsal.begin()
    await rehearsal.until_done_or(_never, poll=0.01)

    # Then exactly one turn ran, in the rehearsal's own session, on the stand-in model
    assert gateway.runs == [(REHEARSAL_SESSION, f"{PROVIDER_ID}/{MODEL_ID}")]
    assert rehearsal.outcome == "done" and gateway.aborted == []


async def test_a_gateway_that_does_not_confirm_the_stand_in_is_sent_nothing() -> None:
    # Given a gateway that leaves the session on the user's (paid) model
    gateway = OpenClawSessions(moves_to=("anthropic", "claude-sonnet-4-5"))
    rehearsal = Rehearsal(gateway)

    # When the rehearsal begins
    rehearsal.begin()
    await rehearsal.until_done_or(_never, poll=0.01)

    # Then no message was sent at all: no token is spent on a rehearsal
    assert gateway.runs == [] and rehearsal.outcome == "refused"


async def test_a_failed_rehearsal_only_costs_time_and_the_next_message_is_answered() -> None:
    # Given a gateway that refuses the rehearsal's request
    gateway = OpenClawSessions(patch_fails=True)
    rehearsal = Rehearsal(gateway)
    runner = GivingWay(gateway, rehearsal)

    # When it begins, and then a message is run
    rehearsal.begin()
    await rehearsal.until_done_or(_never, poll=0.01)
    reply = await runner.run("agent:main:conversation:c1", "hello", idempotency_key="m1")

    # Then the message was answered, once, on the user's model
    assert rehearsal.outcome == "failed" and reply.text == "echo: hello"
    assert gateway.runs == [("agent:main:conversation:c1", "the user's model")]


async def test_a_message_arriving_during_the_rehearsal_is_answered_once_without_waiting_for_it() -> None:
    # Given a rehearsal whose turn would never end on its own
    gateway = OpenClawSessions(rehearsal_hangs=True)
    rehearsal = Rehearsal(gateway)
    runner = GivingWay(gateway, rehearsal)
    rehearsal.begin()
    looks: list[bool] = []

    async def message_waiting() -> bool:
        looks.append(len(looks) >= 2)  # the user's message lands in the Inbox at the third look
        return looks[-1]

    # When the boot waits for the rehearsal while the message arrives, then runs the message
    await asyncio.wait_for(rehearsal.until_done_or(message_waiting, poll=0.01, wait=60), 5)
    reply = await asyncio.wait_for(runner.run("agent:main:conversation:c1", "hello", idempotency_key="m1"), 5)
    await asyncio.wait_for(rehearsal.finished(), 5)

    # Then the boot stopped waiting as soon as the message was there, the rehearsal was aborted, and the
    # message was answered exactly once
    assert looks == [False, False, True] and rehearsal.outcome == "gave way"
    assert gateway.aborted == [REHEARSAL_SESSION]
    assert reply.text == "echo: hello"
    assert [run for run in gateway.runs if run[0] != REHEARSAL_SESSION] == [
        ("agent:main:conversation:c1", "the user's model")
    ]


async def test_a_slow_rehearsal_gives_way_to_the_first_run_after_its_wait() -> None:
    # Given a rehearsal still under way when the boot stopped waiting for it
    gateway = OpenClawSessions(rehearsal_hangs=True)
    rehearsal = Rehearsal(gateway)
    runner = GivingWay(gateway, rehearsal)
    rehearsal.begin()
    await rehearsal.until_done_or(_never, poll=0.01, wait=0.05)
    assert rehearsal.outcome == "rehearsing"

    # When a message is run
    reply = await asyncio.wait_for(runner.run("agent:main:conversation:c1", "hi", idempotency_key="m1"), 5)
    await asyncio.wait_for(rehearsal.finished(), 5)

    # Then it was answered and the rehearsal aborted
    assert reply.text == "echo: hi" and gateway.aborted == [REHEARSAL_SESSION]


def test_the_stand_in_model_streams_a_short_answer_and_counts_what_it_answered() -> None:
    # Given the stand-in model, and its entry in openclaw.json
    with StandInModel() as model:
        entry = provider_entry(model)
        request = urllib.request.Request(
            f"{entry['baseUrl']}/chat/completions",
            data=json.dumps({"model": MODEL_ID, "stream": True, "messages": []}).encode(),
            headers={"Content-Type": "application/json"},
        )

        # When OpenClaw asks it for a completion
        with urllib.request.urlopen(request, timeout=10) as response:
            events = [line for line in response.read().decode().splitlines() if line.startswith("data: ")]

    # Then it streamed "ok" and the end, it counted one request, and it asks for no key
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "ok"
    assert events[-1] == "data: [DONE]" and model.requests == 1
    assert "apiKey" not in entry and entry["models"][0]["id"] == MODEL_ID


def test_the_stand_in_keeps_its_port_from_boot_to_boot_and_takes_any_when_that_one_is_busy() -> None:
    # Given a free port (OpenClaw skips its state migrations only while openclaw.json is unchanged)
    with StandInModel() as probe:
        port = probe.server_address[1]

    # When two boots, one after the other, ask for it
    with StandInModel.preferring(port) as first:
        first_entry = provider_entry(first)
    with StandInModel.preferring(port) as second:
        second_entry = provider_entry(second)

        # And a third asks while the second still holds it
        with StandInModel.preferring(port) as third:
            third_url = third.url

    # Then both boots wrote the same entry, and the third still got a stand-in, elsewhere
    assert first_entry == second_entry and first_entry["baseUrl"] == f"http://127.0.0.1:{port}/v1"
    assert third_url != second_entry["baseUrl"] and third_url.startswith("http://127.0.0.1:")
