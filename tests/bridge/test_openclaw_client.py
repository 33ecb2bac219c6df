"""The OpenClaw gateway client against a fake protocol v4 gateway on loopback."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from bridge.openclaw_client import GatewayClient, GatewayUnavailable
from bridge.openclaw_frames import GatewayError
from bridge.openclaw_run import RunResult
from bridge.openclaw_session import session_key_for
from tests.bridge.fake_gateway import PROVIDER_ERROR, FakeGateway

ALICE = "agent:main:web:conv-alice"
BOB = "agent:main:web:conv-bob"


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as fake:
        yield fake


@pytest.fixture
async def client(gateway: FakeGateway) -> AsyncIterator[GatewayClient]:
    gateway_client = GatewayClient(gateway.url, gateway.token, connect_deadline=10, run_timeout=20)
    await gateway_client.start()
    yield gateway_client
    await gateway_client.close()


def key() -> str:
    return str(uuid.uuid4())


class Recorder:
    """Collects what a run hands to its callbacks."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.phases: list[str] = []
        self.first_delta = asyncio.Event()

    async def on_delta(self, piece: str) -> None:
        self.deltas.append(piece)
        self.first_delta.set()

    async def on_status(self, phase: str) -> None:
        self.phases.append(phase)


# ------------------------------------------------------------------------------------------- handshake


async def test_connects_as_a_backend_operator_with_the_token_and_no_origin(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a started client (the fixture)
    # When we look at what the gateway received
    connect = gateway.requests("connect")[0]

    # Then it is the documented v4 backend handshake, without any Origin header, and the client is usable
    assert client.connected
    assert connect["minProtocol"] == connect["maxProtocol"] == 4
    assert connect["client"]["id"] == "gateway-client"
    assert connect["client"]["mode"] == "backend"
    assert connect["client"]["displayName"] == "serverless-openclaw bridge"
    assert connect["role"] == "operator"
    assert connect["scopes"] == ["operator.read", "operator.write"]
    assert connect["caps"] == ["tool-events"]
    assert connect["auth"] == {"token": gateway.token}
    assert gateway.origins == [None]
    assert client.hello["type"] == "hello-ok"


async def test_retries_while_the_gateway_says_it_is_starting() -> None:
    # Given a gateway whose first two connections answer UNAVAILABLE and close 1013
    async with FakeGateway(starting_connects=2) as gateway:
        client = GatewayClient(gateway.url, gateway.token, connect_deadline=10)

        # When the client starts
        await client.start()

        # Then it got in on the third connection and can chat
        assert gateway.connects == 3
        result = await client.run(ALICE, "hello", idempotency_key=key())
        assert result.text == "Echo: hello"
        await client.close()


async def test_waits_for_a_gateway_that_is_not_listening_yet() -> None:
    # Given a port nobody listens on yet (the gateway process is still loading)
    port = _free_port()
    client = GatewayClient(f"ws://127.0.0.1:{port}", "gateway-secret-token", connect_deadline=30)
    starting = asyncio.create_task(client.start())
    await asyncio.sleep(0.2)  # lets a few refused attempts happen; nothing below depends on it

    # When the gateway comes up
    gateway = await FakeGateway().start(port)
    try:
        await asyncio.wait_for(starting, 30)

        # Then the client connects and works
        assert client.connected
        assert (await client.run(ALICE, "late", idempotency_key=key())).text == "Echo: late"
        await client.close()
    finally:
        await gateway.stop()


async def test_wrong_token_fails_at_once_and_never_logs_the_token(capfd: pytest.CaptureFixture[str]) -> None:
    # Given a gateway expecting another token
    async with FakeGateway(token="the-real-token") as gateway:
        client = GatewayClient(gateway.url, "a-wrong-secret-token", connect_deadline=30)

        # When the client starts
        with pytest.raises(GatewayError) as raised:
            await client.start()

        # Then the error says why, it was not retried and the token appears nowhere
        assert raised.value.code == "AUTH_TOKEN_MISMATCH"
        assert not isinstance(raised.value, GatewayUnavailable)
        assert not raised.value.retryable
        assert gateway.connects == 1
        assert not client.connected
        output = capfd.readouterr()
        assert "a-wrong-secret-token" not in output.out + output.err
        assert "a-wrong-secret-token" not in str(raised.value)


async def test_the_reconnect_listener_hears_each_return_of_the_gateway_not_the_first_connect() -> None:
    # Given a connected client with a reconnect listener
    async with FakeGateway() as gateway:
        heard: list[bool] = []
        client = GatewayClient(
            gateway.url, gateway.token, on_reconnect=lambda: heard.append(client.connected)
        )
        await client.start()
        assert heard == []
        try:
            # When the gateway drops the connection twice, as a killed process would
            for times in (1, 2):
                await gateway.drop_connections(None)
                await gateway.until(lambda t=times: len(heard) == t)

            # Then it heard each return, each time with the connection usable
            assert heard == [True, True] and gateway.connects == 3
        finally:
            await client.close()


async def test_protocol_mismatch_is_fatal() -> None:
    # Given a gateway speaking a protocol version we do not
    async with FakeGateway() as gateway:
        gateway.protocol = 5
        client = GatewayClient(gateway.url, gateway.token, connect_deadline=30)

        # When the client starts
        with pytest.raises(GatewayError) as raised:
            await client.start()

        # Then it gives up on the first answer
        assert raised.value.code == "PROTOCOL_MISMATCH"
        assert gateway.connects == 1


async def test_a_gateway_that_never_finishes_starting_gives_gateway_unavailable() -> None:
    # Given a gateway that says "starting" forever
    async with FakeGateway(starting_connects=10**9) as gateway:
        client = GatewayClient(gateway.url, gateway.token, connect_deadline=0.5)

        # When the client starts
        with pytest.raises(GatewayUnavailable) as raised:
            await client.start()

        # Then it retried until its deadline, then gave up with a retryable error
        assert gateway.connects >= 2
        assert raised.value.retryable
        assert not client.connected


async def test_nothing_listening_gives_gateway_unavailable() -> None:
    # Given a port nobody listens on
    client = GatewayClient(f"ws://127.0.0.1:{_free_port()}", "token", connect_deadline=0.3)

    # When / Then
    with pytest.raises(GatewayUnavailable):
        await client.start()


async def test_a_url_that_is_not_websocket_is_rejected() -> None:
    client = GatewayClient("http://127.0.0.1:1", "token", connect_deadline=5)
    with pytest.raises(GatewayError) as raised:
        await client.start()
    assert raised.value.code == "INVALID_URL"


# ------------------------------------------------------------------------------------------- runs


async def test_streams_a_reply_and_returns_the_final_text(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a user message
    recorder = Recorder()
    idempotency_key = key()

    # When it is run
    result = await client.run(
        ALICE,
        "hello there",
        idempotency_key=idempotency_key,
        on_delta=recorder.on_delta,
        on_status=recorder.on_status,
    )

    # Then the streamed pieces add up to the reply, which is final, and the gateway saw one chat.send
    assert result == RunResult(
        state="final",
        text="Echo: hello there",
        run_id=gateway.runs[idempotency_key].run_id,
        stop_reason="stop",
    )
    assert len(recorder.deltas) > 1
    assert "".join(recorder.deltas) == "Echo: hello there"
    assert recorder.phases == ["preparing_workspace", "starting_model"]
    assert gateway.requests("chat.send") == [
        {"sessionKey": ALICE, "message": "hello there", "idempotencyKey": idempotency_key}
    ]


async def test_a_replacing_delta_replaces_the_text(client: GatewayClient) -> None:
    # Given a run whose second delta rewrites the first
    recorder = Recorder()

    # When it runs
    result = await client.run(ALICE, "!replace", idempotency_key=key(), on_delta=recorder.on_delta)

    # Then the reply is the rewritten text, and what was streamed never contradicts it after the rewrite
    assert result.text == "Hello there"
    assert recorder.deltas == ["Helo", " there"]


async def test_a_provider_failure_returns_the_readable_error(client: GatewayClient) -> None:
    # Given a model provider that fails
    # When a message is run
    result = await client.run(ALICE, "!error", idempotency_key=key())

    # Then the run ends in error with the gateway's readable reason
    assert result.state == "error"
    assert result.error_message == PROVIDER_ERROR
    assert result.error_kind == "unknown"
    assert result.text == ""


async def test_abort_stops_a_running_reply(gateway: FakeGateway, client: GatewayClient) -> None:
    # Given a reply that is streaming
    recorder = Recorder()
    running = asyncio.create_task(
        client.run(ALICE, "!slow", idempotency_key=key(), on_delta=recorder.on_delta)
    )
    await asyncio.wait_for(recorder.first_delta.wait(), 10)

    # When the user stops it
    aborted = await client.abort(ALICE)
    result = await asyncio.wait_for(running, 10)

    # Then the run ends as aborted with the partial text, and the gateway was told which run to stop
    assert aborted is True
    assert result.state == "aborted"
    assert result.text.startswith("tok0 ")
    assert gateway.requests("chat.abort") == [{"sessionKey": ALICE, "runId": result.run_id}]


async def test_abort_with_nothing_running_says_so(client: GatewayClient) -> None:
    assert await client.abort(ALICE) is False


async def test_a_message_merged_into_another_run_gets_that_runs_reply(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given another operator's run holding Alice's session (as the gateway's own restart recovery does)
    other = GatewayClient(gateway.url, gateway.token)
    await other.start()
    held = asyncio.create_task(other.run(ALICE, "!hold interrupted turn", idempotency_key=key()))
    await gateway.until(lambda: gateway.active(ALICE) is not None)

    # When our message reaches the busy session and is steered into that run
    recorder = Recorder()
    ours = asyncio.create_task(
        client.run(ALICE, "our message", idempotency_key=key(), on_delta=recorder.on_delta)
    )
    await gateway.until(lambda: gateway.overlapping_sends == [ALICE])
    gateway.release(ALICE)
    result = await asyncio.wait_for(ours, 10)

    # Then it is reported as merged, with (and streaming) the reply of the run that answered it
    assert result.state == "merged"
    assert result.text == "Held: !hold interrupted turn\n\nour message"
    assert "".join(recorder.deltas) == result.text
    assert (await held).state == "final"
    await other.close()


async def test_a_message_merged_into_a_streaming_run_picks_up_its_text_so_far(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given another operator's run already streaming in Alice's session
    other = GatewayClient(gateway.url, gateway.token)
    await other.start()
    streaming = asyncio.create_task(other.run(ALICE, "!slow", idempotency_key=key()))
    await gateway.until(lambda: (run := gateway.active(ALICE)) is not None and "tok2" in run.text)

    # When our message is merged into it and that run is then stopped
    recorder = Recorder()
    ours = asyncio.create_task(client.run(ALICE, "ours", idempotency_key=key(), on_delta=recorder.on_delta))
    await asyncio.wait_for(recorder.first_delta.wait(), 10)
    assert await other.abort(ALICE)
    result = await asyncio.wait_for(ours, 10)

    # Then we saw that run's text from its start, and its end is ours
    assert result.state == "aborted"
    assert result.text.startswith("tok0 tok1 tok2 ")
    assert "".join(recorder.deltas) == result.text
    await streaming
    await other.close()


async def test_tool_events_reach_the_tool_callback(client: GatewayClient) -> None:
    # Given a run in which the agent uses a tool
    events: list[dict[str, object]] = []

    async def on_tool(payload: dict[str, object]) -> None:
        events.append(payload)

    # When it runs
    result = await client.run(ALICE, "!tool", idempotency_key=key(), on_tool=on_tool)

    # Then the tool progress was reported (not the assistant stream) and the reply is complete
    assert [event["stream"] for event in events] == ["item", "tool", "tool"]
    assert result.text == "The tool ran fine."


async def test_a_failing_delta_consumer_does_not_lose_the_reply(client: GatewayClient) -> None:
    # Given a stream consumer that fails (a closed tab, a flaky push)
    async def broken(piece: str) -> None:
        raise RuntimeError("push failed")

    # When a message is run
    result = await client.run(ALICE, "still here", idempotency_key=key(), on_delta=broken)

    # Then the reply still arrives in full
    assert result.state == "final"
    assert result.text == "Echo: still here"


async def test_events_of_other_sessions_and_runs_never_leak_into_a_run(client: GatewayClient) -> None:
    # Given a gateway that also emits another session's events and a stale run's events in this session
    recorder = Recorder()

    # When a message is run
    result = await client.run(ALICE, "!crosstalk", idempotency_key=key(), on_delta=recorder.on_delta)

    # Then only this run's text was streamed and returned
    assert result.state == "final"
    assert result.text == "Only mine"
    assert "".join(recorder.deltas) == "Only mine"


async def test_one_session_is_serialised_while_two_sessions_run_concurrently(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a first message in Alice's session that the gateway holds
    first = asyncio.create_task(client.run(ALICE, "!hold first", idempotency_key=key()))
    await gateway.until(lambda: gateway.active(ALICE) is not None)

    # When a second message to Alice and one to Bob are sent meanwhile
    second = asyncio.create_task(client.run(ALICE, "second", idempotency_key=key()))
    bob = await asyncio.wait_for(client.run(BOB, "hi from bob", idempotency_key=key()), 10)

    # Then Bob was answered while Alice's first run was still busy, and Alice's second message waited
    assert bob.text == "Echo: hi from bob"
    assert [p["message"] for p in gateway.requests("chat.send", ALICE)] == ["!hold first"]
    assert not second.done()

    # When Alice's first run completes
    gateway.release(ALICE)
    first_result, second_result = await asyncio.wait_for(asyncio.gather(first, second), 10)

    # Then each message got its own answer, in order, and the gateway never saw two runs in one session
    assert first_result.text == "Held: !hold first"
    assert second_result.text == "Echo: second"
    assert [p["message"] for p in gateway.requests("chat.send", ALICE)] == ["!hold first", "second"]
    assert gateway.overlapping_sends == []


async def test_a_run_that_times_out_is_aborted_and_the_session_stays_usable(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a reply that never ends
    # When it exceeds its timeout
    with pytest.raises(asyncio.TimeoutError):
        await client.run(ALICE, "!slow", idempotency_key=key(), timeout=0.3)

    # Then the gateway was asked to abort exactly that run, which ended
    slow = next(run for run in gateway.runs.values() if run.message == "!slow")
    assert gateway.requests("chat.abort") == [{"sessionKey": ALICE, "runId": slow.run_id}]
    assert slow.state == "aborted"

    # And the next message in the session is answered normally
    result = await client.run(ALICE, "after timeout", idempotency_key=key())
    assert result.text == "Echo: after timeout"
    assert gateway.overlapping_sends == []


async def test_a_message_the_gateway_rejects_raises_and_does_not_block_the_session(
    client: GatewayClient,
) -> None:
    # Given a session of an agent that does not exist
    # When a message is run there
    with pytest.raises(GatewayError) as raised:
        await client.run("agent:other:web:x", "hello", idempotency_key=key())

    # Then the gateway's reason is raised, and other sessions still work
    assert raised.value.code == "INVALID_REQUEST"
    assert "no longer exists" in raised.value.message
    assert (await client.run(ALICE, "ok?", idempotency_key=key())).text == "Echo: ok?"


async def test_bad_arguments_are_refused_before_reaching_the_gateway(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    with pytest.raises(ValueError):
        await client.run("web:conv-1", "not canonical", idempotency_key=key())
    with pytest.raises(ValueError):
        await client.run(ALICE, "no key", idempotency_key="")
    with pytest.raises(ValueError):
        await client.run("agent:main:" + "x" * 600, "too long", idempotency_key=key())
    with pytest.raises(ValueError):
        await client.run("agent:main:web:Upper", "events would never match", idempotency_key=key())
    assert gateway.requests("chat.send") == []


def test_session_keys_are_canonical_per_conversation() -> None:
    # OpenClaw lower-cases session keys in its events: a ULID (case-insensitive) is simply lower-cased
    assert (
        session_key_for("01M814N97JSG9E5BPA96RKPVV5") == "agent:main:conversation:01m814n97jsg9e5bpa96rkpvv5"
    )
    # One session per conversation whatever channel a message came from: no channel in the key
    assert session_key_for("12345") == "agent:main:conversation:12345"
    # Other ids keep apart when they differ only in case
    upper, lower = session_key_for("Plan"), session_key_for("plan")
    assert lower == "agent:main:conversation:plan" and upper.startswith("agent:main:conversation:plan-")
    assert upper != lower and upper == upper.lower()
    for conversation in ["", " ", "x" * 600]:
        with pytest.raises(ValueError):
            session_key_for(conversation)


# ------------------------------------------------------------------------------------------- reconnects


async def test_a_gateway_restart_mid_run_resends_and_finishes_the_same_run(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a gateway that announces a shutdown and closes 1012 mid-reply, then says "starting" once
    gateway.starting_until = gateway.connects + 1
    recorder = Recorder()
    idempotency_key = key()

    # When a message is run through it
    result = await client.run(ALICE, "!drop", idempotency_key=idempotency_key, on_delta=recorder.on_delta)

    # Then the reply is complete, including what was said while we were disconnected
    assert result.state == "final"
    assert result.text == "part one, part two, part three, part four"
    assert "".join(recorder.deltas) == result.text
    # And the message was re-sent with the same idempotency key, so the model ran once
    sends = gateway.requests("chat.send", ALICE)
    assert [p["idempotencyKey"] for p in sends] == [idempotency_key, idempotency_key]
    assert len(gateway.runs) == 1
    assert client.connected
    assert gateway.connects == 3


async def test_a_run_that_finished_while_disconnected_is_recovered_from_history(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a run that finishes while the gateway has dropped the connection
    idempotency_key = key()

    # When the message is run
    result = await client.run(ALICE, "!drop-finish", idempotency_key=idempotency_key)

    # Then the gateway answered the re-send "ok" and the reply came from chat.history
    assert result.state == "final"
    assert result.text == "part one, part two."
    assert len(gateway.runs) == 1
    assert gateway.requests("chat.history", ALICE) == [{"sessionKey": ALICE, "limit": 50}]


async def test_a_gateway_that_crashed_and_forgot_the_run_answers_the_resent_message(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a gateway that dies mid-reply (no shutdown, no close frame) and comes back without the run
    recorder = Recorder()
    idempotency_key = key()

    # When a message is run through it
    result = await client.run(
        ALICE, "!drop-forget", idempotency_key=idempotency_key, on_delta=recorder.on_delta
    )

    # Then the re-sent message is answered in full by the new run, not glued to the lost partial reply
    assert result.state == "final"
    assert result.text == "Echo: !drop-forget"
    assert [p["idempotencyKey"] for p in gateway.requests("chat.send", ALICE)] == [idempotency_key] * 2
    assert recorder.deltas[0] == "doomed "


async def test_reconnects_after_an_idle_drop(gateway: FakeGateway, client: GatewayClient) -> None:
    # Given an idle connection that the gateway drops without warning
    await gateway.drop_connections(1011, announce=False)

    # When the next message is run
    result = await client.run(ALICE, "after drop", idempotency_key=key())

    # Then it is answered on a new connection
    assert result.text == "Echo: after drop"
    assert gateway.connects == 2
    assert client.connected


async def test_a_reconnect_with_a_rejected_token_fails_waiting_runs(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a gateway restarted with another token
    gateway.token = "rotated-token"
    await gateway.drop_connections()

    # When a message is run
    with pytest.raises(GatewayError) as raised:
        await client.run(ALICE, "hello", idempotency_key=key(), timeout=10)

    # Then the run fails with the reason instead of waiting forever, and no more connections are tried
    assert raised.value.code == "AUTH_TOKEN_MISMATCH"
    assert gateway.connects == 2
    assert not client.connected


async def test_close_ends_a_waiting_run_and_stops_reconnecting(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    # Given a run in progress
    running = asyncio.create_task(client.run(ALICE, "!hold", idempotency_key=key()))
    await gateway.until(lambda: gateway.active(ALICE) is not None)

    # When the client is closed
    await client.close()

    # Then the run fails with CLOSED, and the client neither reconnects nor accepts requests
    with pytest.raises(GatewayError) as raised:
        await asyncio.wait_for(running, 10)
    assert raised.value.code == "CLOSED"
    assert not client.connected
    with pytest.raises(GatewayError):
        await client.history(ALICE)
    assert gateway.connects == 1


# ------------------------------------------------------------------------------------------- requests


async def test_history_returns_the_session_messages(client: GatewayClient) -> None:
    # Given one exchange in a session
    await client.run(ALICE, "remember me", idempotency_key=key())

    # When its history is read
    messages = await client.history(ALICE, limit=10)

    # Then it holds the user's message and the reply
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == [{"type": "text", "text": "Echo: remember me"}]


async def test_an_unknown_method_raises_the_gateway_error(client: GatewayClient) -> None:
    with pytest.raises(GatewayError) as raised:
        await client.request("no.such.method", {})
    assert raised.value.code == "INVALID_REQUEST"
    assert client.connected


async def test_requests_before_start_are_a_programming_error() -> None:
    client = GatewayClient("ws://127.0.0.1:1", "token")
    with pytest.raises(RuntimeError):
        await client.history(ALICE)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
