"""Delivery: streamed replies reach every open tab of the user, coalesced and in order, come what may."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from bridge.delivery import MAX_FRAME_CHARS, WebSocketDelivery, readable_error
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.messages import InboxItem
from tests.fakes import RecordingPusher

USER = "alice"


def item(user_id: str = USER, conversation_id: str = "conv-1") -> InboxItem:
    return InboxItem(
        user_id=user_id,
        message_id="01JUSERMSG",
        text="hello",
        channel="web",
        conversation_id=conversation_id,
        created_at=1_800_000_000.0,
    )


class FakePusher:
    """Records every fan-out call; can fail (`fail_first` calls raise) or hold the first push."""

    def __init__(self, *, fail_first: int = 0, always_fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.prefetched: list[str] = []
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.attempts = 0
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self._changed = threading.Condition()

    def prefetch(self, user_id: str) -> None:
        self.prefetched.append(user_id)

    def to_user(self, user_id: str, payload: Mapping[str, Any]) -> int:
        self.attempts += 1
        self.entered.set()
        if self.hold is not None and self.attempts == 1:
            self.hold.wait(30)
        if self.always_fail or self.attempts <= self.fail_first:
            raise ConnectionError("API Gateway unreachable")
        with self._changed:
            self.calls.append((user_id, dict(payload)))
            self._changed.notify_all()
        return 1

    def frames(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [frame for _, frame in self.calls if type_ is None or frame["type"] == type_]

    def streamed_text(self) -> str:
        return "".join(frame["content"] for frame in self.frames("stream_chunk"))

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: len(self.calls) >= count, timeout)

        assert await asyncio.to_thread(wait), f"expected {count} pushes, got {len(self.calls)}"


async def test_first_chunk_goes_out_at_once_and_later_ones_wait_for_the_interval() -> None:
    # Given a stream whose coalescing interval is far longer than the test
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "01JREPLY")

    # When the first token arrives
    await stream.chunk("Hel")
    # (the user's connections were looked up while the model was still thinking)
    assert pusher.prefetched == [item().user_id]

    # Then the user sees it at once, addressed to the conversation, the reply's message id and the
    # message it answers
    assert pusher.frames() == [
        {
            "type": "stream_chunk",
            "conversationId": "conv-1",
            "messageId": "01JREPLY",
            "replyTo": "01JUSERMSG",
            "content": "Hel",
        }
    ]

    # When more tokens arrive within the interval, then they are held back
    await stream.chunk("lo, ")
    await stream.chunk("world")
    assert len(pusher.calls) == 1

    # When the reply ends, the held text goes out, then the full text
    await stream.end("Hello, world")
    assert [f["type"] for f in pusher.frames()] == ["stream_chunk", "stream_chunk", "stream_end"]
    assert pusher.frames()[1]["content"] == "lo, world"
    assert pusher.frames()[2] == {
        "type": "stream_end",
        "conversationId": "conv-1",
        "messageId": "01JREPLY",
        "replyTo": "01JUSERMSG",
        "content": "Hello, world",
    }


async def test_a_rewrite_drops_held_text_and_replaces_what_the_tabs_show_at_once() -> None:
    # Given a reply that showed "w1 w2" and holds " w3" back for the interval
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "01JREPLY")
    await stream.chunk("w1 w2")
    await stream.chunk(" w3")

    # When the reply is rewritten (a restarted run wrote another one), then goes on
    await stream.rewrite("x1")
    await stream.chunk(" x2")
    await stream.end("x1 x2")

    # Then the held text never goes out, the rewrite does at once and says so, and a tab that applies the
    # frames in order shows the new reply, not the old one glued to it
    chunks = pusher.frames("stream_chunk")
    assert [(f["content"], f.get("rewrite", False)) for f in chunks] == [
        ("w1 w2", False),
        ("x1", True),
        (" x2", False),
    ]
    shown = ""
    for frame in chunks:
        shown = ("" if frame.get("rewrite") else shown) + frame["content"]
    assert shown == "x1 x2"
    assert pusher.frames("stream_end")[0]["content"] == "x1 x2"


async def test_two_hundred_quick_deltas_make_few_pushes_with_the_text_intact_and_in_order() -> None:
    # Given the production settings
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher).open(item(), "01JREPLY")
    deltas = [f"tok{i} " for i in range(200)]
    loop = asyncio.get_running_loop()

    # When 200 deltas stream in as fast as the model produces them
    started = loop.time()
    for delta in deltas:
        await stream.chunk(delta)
        await asyncio.sleep(0)  # let timers run, as a real event stream would
    elapsed = loop.time() - started
    await stream.end("".join(deltas))

    # Then far fewer pushes than tokens were made: the first, then at most one per flush interval
    # (bounded by the time the stream really took, so a slow machine cannot fail this), plus the tail
    chunk_pushes = len(pusher.frames("stream_chunk"))
    assert chunk_pushes <= 2 + elapsed / 0.15
    assert chunk_pushes < len(deltas)
    # And the user got every token, in order, and the final frame carries the full text
    assert pusher.streamed_text() == "".join(deltas)
    assert pusher.frames()[-1] == {
        "type": "stream_end",
        "conversationId": "conv-1",
        "messageId": "01JREPLY",
        "replyTo": "01JUSERMSG",
        "content": "".join(deltas),
    }


async def test_a_full_buffer_is_pushed_without_waiting_for_the_interval() -> None:
    # Given a small buffer and an interval longer than the test
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600, max_buffer_chars=100).open(item(), "m1")

    # When 500 characters arrive in 10-character deltas
    for i in range(50):
        await stream.chunk(f"{i:09d} ")

    # Then the text went out in buffer-sized pieces, not per delta and not all at the end
    sizes = [len(f["content"]) for f in pusher.frames("stream_chunk")]
    assert sizes[0] == 10  # the first delta, at once
    assert all(size >= 100 for size in sizes[1:])
    assert 4 <= len(sizes) <= 6
    await stream.end("x")
    assert pusher.streamed_text() == "".join(f"{i:09d} " for i in range(50))


async def test_held_text_goes_out_on_the_timer_even_if_the_model_pauses() -> None:
    # Given a short interval
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=0.01).open(item(), "m1")

    # When the model sends two deltas and then thinks for a while (no more deltas, no end yet)
    await stream.chunk("Let me check")
    await stream.chunk(" your files…")

    # Then the second delta still reaches the user without waiting for the end
    await pusher.wait_for(2)
    assert pusher.streamed_text() == "Let me check your files…"
    await stream.end("Let me check your files…")
    assert pusher.frames()[-1]["type"] == "stream_end"


async def test_fail_after_a_partial_reply_delivers_the_partial_text_then_a_readable_error() -> None:
    # Given a reply that has streamed part of its text
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "01JREPLY")
    await stream.chunk("Partial ans")
    await stream.chunk("wer")

    # When the run fails
    await stream.fail("provider_failed", "The model provider is failing right now.")

    # Then the held text is not lost and the error names the reply it belongs to
    assert pusher.streamed_text() == "Partial answer"
    assert pusher.frames()[-1] == {
        "type": "error",
        "code": "provider_failed",
        "error": "The model provider is failing right now.",
        "conversationId": "conv-1",
        "messageId": "01JREPLY",
        "replyTo": "01JUSERMSG",
    }


async def test_nothing_is_sent_after_the_reply_ended() -> None:
    # Given an ended reply
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "m1")
    await stream.chunk("done")
    await stream.end("done")

    # When a late delta, a second end and a fail arrive
    await stream.chunk("late")
    await stream.end("again")
    await stream.fail("x", "y")

    # Then the user saw exactly one reply, ending once
    assert [f["type"] for f in pusher.frames()] == ["stream_chunk", "stream_end"]


async def test_a_pusher_that_raises_never_breaks_the_run() -> None:
    # Given API Gateway unreachable for every push
    pusher = FakePusher(always_fail=True)
    stream = WebSocketDelivery(pusher, flush_interval=0).open(item(), "m1")

    # When a whole reply streams through it, then nothing is raised to the agent loop
    for delta in ("a", "b", "c"):
        await stream.chunk(delta)
        await asyncio.sleep(0)
    await stream.end("abc")
    await stream.fail("late", "ignored")
    assert pusher.attempts >= 2


async def test_a_failed_push_does_not_stop_later_frames() -> None:
    # Given a push API that fails once, then recovers
    pusher = FakePusher(fail_first=1)
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "m1")

    # When the first chunk is lost and the reply continues
    await stream.chunk("lost ")
    await stream.chunk("kept")
    await stream.end("lost kept")

    # Then the rest of the reply, and the full text, still arrive
    assert pusher.streamed_text() == "kept"
    assert pusher.frames()[-1]["content"] == "lost kept"


async def test_a_cancelled_push_is_never_overtaken_by_the_next_frame() -> None:
    # Given a push stuck in API Gateway
    pusher = FakePusher()
    pusher.hold = threading.Event()
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "m1")
    first = asyncio.create_task(stream.chunk("first"))
    await asyncio.to_thread(pusher.entered.wait, 10)

    # When the run is cancelled mid-push (a shutdown) and the reply is failed right after
    first.cancel()
    failing = asyncio.create_task(stream.fail("interrupted", "The agent is restarting."))
    # (a bounded look, not a timing assertion: the error must not be able to finish while the chunk is stuck)
    try:
        done, _ = await asyncio.wait([failing], timeout=0.2)
        assert not done
    finally:
        pusher.hold.set()
    await failing

    # Then the browser still sees the chunk before the error
    assert [f["type"] for f in pusher.frames()] == ["stream_chunk", "error"]


async def test_oversized_text_is_split_into_frames_api_gateway_accepts() -> None:
    # Given a reply far larger than one WebSocket frame
    pusher = FakePusher()
    stream = WebSocketDelivery(pusher, flush_interval=3600, max_buffer_chars=10**9).open(item(), "m1")
    huge = "x" * (2 * MAX_FRAME_CHARS + 5)

    # When it arrives as one delta and ends
    await stream.chunk(huge)
    await stream.end(huge)

    # Then every frame stays under the limit, the streamed text is whole, and the end says it is truncated
    assert all(len(f["content"]) <= MAX_FRAME_CHARS for f in pusher.frames())
    assert pusher.streamed_text() == huge
    end = pusher.frames("stream_end")[0]
    assert end["truncated"] is True
    assert huge.startswith(end["content"])


async def test_notice_reaches_the_user_and_a_failing_push_is_swallowed() -> None:
    # Given a working and a broken push API
    working, broken = FakePusher(), FakePusher(always_fail=True)

    # When a status notice is sent through both
    await WebSocketDelivery(working).notice(USER, {"type": "status", "status": "running"})
    await WebSocketDelivery(broken).notice(USER, {"type": "status", "status": "running"})

    # Then the user got it where the API works, and the broken one raised nothing
    assert working.calls == [(USER, {"type": "status", "status": "running"})]
    assert broken.attempts == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        WebSocketDelivery(FakePusher(), flush_interval=-1)
    with pytest.raises(ValueError):
        WebSocketDelivery(FakePusher(), max_buffer_chars=0)


async def test_reply_reaches_every_tab_of_the_user_and_no_one_else(
    cp: ControlPlane, pusher: RecordingPusher
) -> None:
    # Given alice with two open tabs and one closed one, bob with a tab, and alice's agent connection
    now = cp.clock()
    for conn_id, user in (("tab-a1", "alice"), ("tab-a2", "alice"), ("tab-gone", "alice"), ("tab-b", "bob")):
        cp.connections.put(Connection(conn_id, user_id=user, kind="client", connected_at=now))
    cp.connections.put(Connection("agent-1", user_id="alice", kind="agent", connected_at=now, task_arn="t"))
    pusher.gone.add("tab-gone")
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item("alice"), "01JREPLY")

    # When a reply streams
    await stream.chunk("Hi ")
    await stream.chunk("there")
    await stream.end("Hi there")

    # Then both of alice's open tabs get the whole reply, in order
    for tab in ("tab-a1", "tab-a2"):
        frames = pusher.frames(tab)
        assert [f["type"] for f in frames] == ["stream_chunk", "stream_chunk", "stream_end"]
        assert "".join(f["content"] for f in frames[:2]) == "Hi there"
        assert frames[-1]["content"] == "Hi there"
    # And the closed tab is forgotten, while bob and the agent connection get nothing
    assert cp.connections.get("tab-gone") is None
    assert pusher.frames("tab-b") == []
    assert pusher.frames("agent-1") == []


@pytest.mark.parametrize(
    ("state", "message", "kind", "code", "expected"),
    [
        (
            "error",
            "⚠️ stub/stub-model request failed (provider internal error, HTTP 500). "
            "This is usually temporary — try again shortly.",
            None,
            "provider_failed",
            "The model provider is failing right now (provider internal error, HTTP 500); "
            "your message was not lost — try again in a minute.",
        ),
        (
            "error",
            "⚠️ anthropic/claude request failed (rate limited, HTTP 429). This is usually temporary.",
            "rate_limit",
            "provider_failed",
            "The model provider is failing right now (rate limited, HTTP 429); "
            "your message was not lost — try again in a minute.",
        ),
        (
            "error",
            None,
            "rate_limit",
            "provider_failed",
            "The model provider is failing right now (rate limited)",
        ),
        ("aborted", "aborted by rpc", None, "aborted", "Stopped."),
        ("final_empty", None, None, "empty_reply", "The agent finished without a reply."),
        ("final", "", None, "empty_reply", "The agent finished without a reply."),
        ("timeout", None, None, "timeout", "The agent took too long to answer"),
        ("error", "Gateway timeout after 180s", "timeout", "timeout", "The agent took too long to answer"),
        ("error", None, "context_length", "context_too_long", "start a new conversation"),
        ("error", "Context overflow: prompt too large", None, "context_too_long", "too long for the model"),
        ("error", None, "refusal", "refused", "The model declined to answer"),
        (
            "error",
            "⚠️ openai/gpt request failed (authentication failed, HTTP 401). Re-authenticate the provider.",
            None,
            "provider_rejected",
            "The model provider refused the request (authentication failed, HTTP 401)",
        ),
        (  # the real gateway's words for a stub provider answering 401
            "error",
            "Authentication failed (provider returned HTTP 401). Your provider token may have expired — try "
            "the request again in a moment. If the failure persists, re-authenticate this provider.",
            None,
            "provider_rejected",
            "The model provider refused the request (Authentication failed, HTTP 401); check the provider's",
        ),
        (  # the real gateway's words for a stub provider answering 429
            "error",
            "⚠️ API rate limit reached. Please try again later.",
            "rate_limit",
            "provider_failed",
            "The model provider is failing right now (API rate limit reached); your message was not lost",
        ),
        (  # the real gateway's words for a context overflow
            "error",
            "Context overflow: prompt too large for the model. Try /reset (or /new) to start afresh.",
            "context_length",
            "context_too_long",
            "start a new conversation",
        ),
        (
            "error",
            "⚠️ Agent couldn't generate a response. Please try again.",
            "unknown",
            "agent_error",
            "The agent could not answer (Agent couldn't generate a response); your message was not lost",
        ),
        ("error", None, None, "agent_error", "The agent could not answer this message"),
    ],
)
def test_readable_error_explains_what_happened(
    state: str, message: str | None, kind: str | None, code: str, expected: str
) -> None:
    # Given how an OpenClaw run ended / When it is turned into words for the user
    got_code, text = readable_error(state, message, kind)

    # Then the code is stable and the text says what happened
    assert got_code == code
    assert expected in text


@pytest.mark.parametrize(
    ("state", "message", "kind", "code", "text"),
    [
        ("empty", None, None, "empty_reply", "The agent finished without a reply."),
        (
            "error",
            "(billing)",
            None,
            "provider_rejected",
            "The model provider refused the request (rejected); "
            "check the provider's API key, billing and model settings.",
        ),
        (
            "error",
            "(overloaded)",
            None,
            "provider_failed",
            "The model provider is failing right now (temporary failure); "
            "your message was not lost — try again in a minute.",
        ),
        (
            "error",
            "gateway request failed (socket hang up)",
            None,
            "provider_failed",
            "The model provider is failing right now (socket hang up); "
            "your message was not lost — try again in a minute.",
        ),
        (
            "timeout",
            "  ",
            " TIMEOUT ",
            "timeout",
            "The agent took too long to answer and was stopped; your message was not lost — "
            "try again in a minute.",
        ),
        (
            "timeout",
            "rate limited",
            None,
            "provider_failed",
            "The model provider is failing right now (rate limited); "
            "your message was not lost — try again in a minute.",
        ),
        (
            "error",
            "Something broke",
            "context_length",
            "context_too_long",
            "This conversation has grown too long for the model; start a new conversation and try again.",
        ),
        (
            "error",
            "Something broke. Details follow",
            "Refusal",
            "refused",
            "The model declined to answer this message.",
        ),
        (
            "error",
            "Something broke. Details follow",
            None,
            "agent_error",
            "The agent could not answer (Something broke); your message was not lost — try again.",
        ),
        (
            "error",
            "",
            None,
            "agent_error",
            "The agent could not answer this message; your message was not lost — try again.",
        ),
    ],
)
def test_readable_error_says_exactly_this(
    state: str, message: str | None, kind: str | None, code: str, text: str
) -> None:
    # Given how a run ended / When it is put in words / Then the user reads exactly this
    assert readable_error(state, message, kind) == (code, text)


def test_readable_error_clips_long_unknown_messages() -> None:
    # Given an unexpected, very long error text
    code, text = readable_error("error", "boom " * 500, None)

    # Then the user gets a short sentence, not a wall of text
    assert code == "agent_error"
    assert len(text) < 300
    assert "boom" in text


async def test_a_failed_connection_prefetch_costs_the_reply_nothing() -> None:
    # Given a pusher whose prefetch fails (DynamoDB throttled, say)
    pusher = FakePusher()

    def broken(user_id: str) -> None:
        raise ConnectionError("throttled")

    pusher.prefetch = broken  # type: ignore[method-assign]
    stream = WebSocketDelivery(pusher, flush_interval=3600).open(item(), "m1")

    # When the reply streams and ends, then it is delivered in full
    await stream.chunk("All ")
    await stream.end("All there")
    assert [f["type"] for f in pusher.frames()] == ["stream_chunk", "stream_end"]
    assert pusher.frames()[-1]["content"] == "All there"
