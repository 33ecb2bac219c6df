"""The Inbox loop: every message is answered once, stored, deleted; failures are bounded and told."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.agent_loop import InboxLoop
from bridge.fence import Fence
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.messages import InboxItem, IncomingMessage, reply_id
from tests.fakes import Clock

USER = "user-a"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/t1"


@dataclass
class Result:
    state: str
    text: str = ""
    error_message: str | None = None
    error_kind: str | None = None


@dataclass
class ScriptedRunner:
    """Answers by text: a reply function per message, or an exception; records what ran, in order."""

    reply: Callable[[str], Result | Exception] = lambda text: Result("final", f"echo: {text}")
    ran: list[tuple[str, str, str]] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    hold: asyncio.Event | None = None

    async def run(
        self,
        session_key: str,
        message: str,
        *,
        idempotency_key: str,
        on_delta: Callable[[str], Awaitable[None]] | None = None,
        on_rewrite: Callable[[str], Awaitable[None]] | None = None,
        timeout: float | None = None,
    ) -> Result:
        self.ran.append((session_key, message, idempotency_key))
        outcome = self.reply(message)
        if isinstance(outcome, Exception):
            raise outcome
        if on_delta and outcome.text:
            for word in outcome.text.split(" "):
                await on_delta(word + " ")
        if self.hold is not None:
            await self.hold.wait()
            if self.aborted:
                return Result("aborted", outcome.text[:5])
        return outcome

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        self.aborted.append(session_key)
        if self.hold is not None:
            self.hold.set()
        return True


@dataclass
class Stream:
    events: list[tuple[str, Any]]

    async def chunk(self, text: str) -> None:
        self.events.append(("chunk", text))

    async def rewrite(self, text: str) -> None:
        self.events.append(("rewrite", text))

    async def end(self, full_text: str) -> None:
        self.events.append(("end", full_text))

    async def fail(self, code: str, message: str) -> None:
        self.events.append(("fail", (code, message)))


@dataclass
class RecordingDelivery:
    streams: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    def open(self, item: InboxItem, message_id: str) -> Stream:
        events: list[tuple[str, Any]] = []
        self.streams[item.message_id] = events
        return Stream(events)

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        return None


def _queue(cp: ControlPlane, text: str, conversation: str = "conv-1") -> str:
    return cp.intake.accept(IncomingMessage(USER, text, "web", conversation), cp.clock()).message_id


def _name_task(cp: ControlPlane, task_arn: str) -> None:
    """TaskState names `task_arn` (Running), as it does for a bridge that came up."""
    state = cp.task_state.get(USER)
    if state.task_arn == task_arn:
        return
    started = cp.task_state.transition(state, Status.STARTING, cp.clock())
    assert started is not None and cp.task_state.record_launch(started, task_arn, Capacity.SPOT)
    assert cp.task_state.settle_own(USER, task_arn, Status.RUNNING, cp.clock(), from_=(Status.STARTING,))


def _fence(cp: ControlPlane, lease_seconds: int = 60, heartbeat_limit: float = 180) -> Fence:
    """The fence of a bridge whose TaskState row names it, confirmed just now."""
    _name_task(cp, TASK)
    fence = Fence(
        user_id=USER,
        task_arn=TASK,
        inbox=cp.inbox,
        task_state=cp.task_state,
        clock=cp.clock,
        lease_seconds=lease_seconds,
        heartbeat_limit=heartbeat_limit,
    )
    fence.task_confirmed(cp.clock())
    return fence


def _loop(cp: ControlPlane, runner: ScriptedRunner, delivery: RecordingDelivery, **kw: Any) -> InboxLoop:
    return InboxLoop(
        user_id=USER,
        claimer=TASK,
        inbox=cp.inbox,
        conversations=cp.conversations,
        runner=runner,
        delivery=delivery,
        fence=kw.pop("fence", None) or _fence(cp),
        session_key_for=lambda conv: f"agent:main:web:{conv}",
        clock=cp.clock,
        lease_seconds=60,
        max_attempts=kw.pop("max_attempts", 3),
        **kw,
    )


async def _start_long_run(
    cp: ControlPlane,
) -> tuple[str, ScriptedRunner, RecordingDelivery, InboxLoop, asyncio.Task[int]]:
    """A queued message whose run streams, then holds until it is aborted (or released)."""
    message = _queue(cp, "long story")
    runner = ScriptedRunner(reply=lambda _: Result("final", "once upon a time"), hold=asyncio.Event())
    delivery = RecordingDelivery()
    loop = _loop(cp, runner, delivery)
    drain = asyncio.create_task(loop.drain())
    while not loop.busy:
        await asyncio.sleep(0.01)
    return message, runner, delivery, loop, drain


async def test_drain_answers_every_message_in_order_and_empties_the_inbox(cp: ControlPlane) -> None:
    # Given three queued messages in two conversations
    ids = [_queue(cp, "one"), _queue(cp, "two", "conv-2"), _queue(cp, "three")]
    runner, delivery = ScriptedRunner(), RecordingDelivery()

    # When the loop drains
    handled = await _loop(cp, runner, delivery).drain()

    # Then each ran once, oldest first, in its conversation's session, keyed by the Inbox message id
    assert handled == 3
    assert [(s, m) for s, m, _ in runner.ran] == [
        ("agent:main:web:conv-1", "one"),
        ("agent:main:web:conv-2", "two"),
        ("agent:main:web:conv-1", "three"),
    ]
    assert [k for _, _, k in runner.ran] == ids
    # And each reply streamed and ended with the full text, is stored in history, and the Inbox is empty
    assert delivery.streams[ids[0]][-1] == ("end", "echo: one")
    assert [e for e in delivery.streams[ids[0]] if e[0] == "chunk"]
    history = list(reversed(cp.conversations.messages(USER, "conv-1").items))
    # (each reply sorts right under its question, even though both were queued before the first reply)
    assert [m["content"] for m in history] == ["one", "echo: one", "three", "echo: three"]
    assert [m.get("replyTo") for m in history[1::2]] == [ids[0], ids[2]]
    assert [m["messageId"] for m in history[1::2]] == [reply_id(ids[0]), reply_id(ids[2])]
    assert cp.inbox.items(USER) == []


async def test_provider_error_is_told_stored_and_marked_failed(cp: ControlPlane) -> None:
    # Given the model provider fails (OpenClaw already retried it)
    message = _queue(cp, "hello")
    runner = ScriptedRunner(reply=lambda _: Result("error", error_message="HTTP 500 from provider"))
    delivery = RecordingDelivery()

    # When the loop drains
    await _loop(cp, runner, delivery).drain()

    # Then the user sees a readable error, it is in the history, the item is failed (not retried)
    kind, (code, text) = delivery.streams[message][-1]
    assert kind == "fail" and code == "provider_failed" and "provider" in text.lower()
    reply = cp.conversations.messages(USER, "conv-1").items[0]
    assert (reply["role"], reply["content"], reply["state"], reply["replyTo"]) == (
        "assistant",
        text,
        "error",
        message,
    )
    (item,) = cp.inbox.items(USER)
    assert item.status == "failed"
    assert len(runner.ran) == 1


async def test_empty_reply_is_an_error_not_silence(cp: ControlPlane) -> None:
    message = _queue(cp, "hello")
    delivery = RecordingDelivery()
    await _loop(cp, ScriptedRunner(reply=lambda _: Result("final", "   ")), delivery).drain()
    kind, (code, text) = delivery.streams[message][-1]
    assert kind == "fail" and "without a reply" in text


async def test_a_crashing_run_is_retried_then_given_up_and_the_loop_survives(cp: ControlPlane) -> None:
    # Given a message that makes the gateway client blow up every time, and a good one after it
    bad = _queue(cp, "poison")
    good = _queue(cp, "fine")
    runner = ScriptedRunner(
        reply=lambda text: RuntimeError("socket closed") if text == "poison" else Result("final", "ok")
    )
    delivery = RecordingDelivery()
    loop = _loop(cp, runner, delivery, max_attempts=2)

    # When the loop drains (it re-claims the released item until its attempts run out)
    await loop.drain()

    # Then the poison message ran twice, was failed with a notice, and the good one was answered
    assert [m for _, m, _ in runner.ran].count("poison") == 2
    assert (
        delivery.streams[bad][-1][0] == "fail" and "could not be answered" in delivery.streams[bad][-1][1][1]
    )
    assert delivery.streams[good][-1] == ("end", "ok")
    assert [i.status for i in cp.inbox.items(USER)] == ["failed"]


async def test_item_over_its_attempts_is_failed_without_running(cp: ControlPlane, clock: Clock) -> None:
    # Given an item already tried by dead bridges (claimed, lease expired) as often as allowed
    message = _queue(cp, "again")
    for n in range(3):
        assert cp.inbox.claim_next(USER, f"dead-{n}", clock(), 1)
        clock.advance(2)
    runner, delivery = ScriptedRunner(), RecordingDelivery()

    # When a new bridge drains
    await _loop(cp, runner, delivery).drain()

    # Then it is not run a fourth time; the user is told
    assert runner.ran == []
    assert delivery.streams[message][-1][0] == "fail"
    assert cp.inbox.items(USER)[0].status == "failed"


async def test_user_abort_stores_the_partial_reply_and_completes(cp: ControlPlane) -> None:
    # Given a long reply in progress
    message, runner, delivery, _, drain = await _start_long_run(cp)

    # When the user presses stop
    await runner.abort("agent:main:web:conv-1")
    await drain

    # Then the stream ends as stopped, the partial reply is in the history, the item is done (not retried)
    assert delivery.streams[message][-1] == ("fail", ("aborted", "Stopped."))
    reply = cp.conversations.messages(USER, "conv-1").items[0]
    assert (reply["content"], reply["state"], reply["replyTo"]) == ("once ", "aborted", message)
    assert cp.inbox.items(USER) == []


async def test_shutdown_aborts_a_long_run_and_gives_the_message_back(cp: ControlPlane) -> None:
    # Given a run that will not finish within the grace period
    message, runner, delivery, loop, drain = await _start_long_run(cp)

    # When the task is stopped
    loop.stop_claiming()
    clean = await loop.finish_or_abort(grace=0.05)
    await drain

    # Then the run was aborted and the message is queued again for the next task (nothing lost)
    assert clean is False and runner.aborted
    (item,) = cp.inbox.items(USER)
    assert item.status == "queued" and item.message_id == message
    assert delivery.streams[message][-1][1][0] == "interrupted"


async def test_shutdown_lets_a_short_run_finish(cp: ControlPlane) -> None:
    hold = asyncio.Event()
    message = _queue(cp, "quick")
    runner = ScriptedRunner(hold=hold)
    delivery = RecordingDelivery()
    loop = _loop(cp, runner, delivery)
    drain = asyncio.create_task(loop.drain())
    while not loop.busy:
        await asyncio.sleep(0.01)
    loop.stop_claiming()
    asyncio.get_running_loop().call_later(0.05, hold.set)
    assert await loop.finish_or_abort(grace=5) is True
    await drain
    assert delivery.streams[message][-1] == ("end", "echo: quick")
    assert cp.inbox.items(USER) == []


async def test_stop_claiming_leaves_later_messages_queued(cp: ControlPlane) -> None:
    _queue(cp, "one")
    loop = _loop(cp, ScriptedRunner(), RecordingDelivery())
    loop.stop_claiming()
    assert await loop.drain() == 0
    assert [i.status for i in cp.inbox.items(USER)] == ["queued"]


async def test_merged_run_completes_the_item(cp: ControlPlane) -> None:
    _queue(cp, "hi")
    await _loop(cp, ScriptedRunner(reply=lambda _: Result("merged")), RecordingDelivery()).drain()
    assert cp.inbox.items(USER) == []


async def test_merged_run_with_text_is_delivered_and_stored(cp: ControlPlane) -> None:
    # Given a run OpenClaw folded into another one (after a gateway restart), whose reply answers both
    message = _queue(cp, "hi")
    delivery = RecordingDelivery()
    runner = ScriptedRunner(reply=lambda _: Result("merged", "answer to both"))

    # When the loop handles it
    await _loop(cp, runner, delivery).drain()

    # Then the user gets that reply, it is in the history, and the item is done
    assert delivery.streams[message][-1] == ("end", "answer to both")
    assert cp.conversations.messages(USER, "conv-1").items[0]["content"] == "answer to both"
    assert cp.inbox.items(USER) == []


@dataclass
class FreezingRunner(ScriptedRunner):
    """Streams half its reply, lets `meanwhile` happen (a freeze: time passes, others act), then the rest."""

    meanwhile: Callable[[], None] = lambda: None

    async def run(
        self,
        session_key: str,
        message: str,
        *,
        idempotency_key: str,
        on_delta: Callable[[str], Awaitable[None]] | None = None,
        on_rewrite: Callable[[str], Awaitable[None]] | None = None,
        timeout: float | None = None,
    ) -> Result:
        self.ran.append((session_key, message, idempotency_key))
        words = ["one ", "two ", "three ", "four "]
        for n, word in enumerate(words):
            if n == 2:
                self.meanwhile()
            if on_delta:
                await on_delta(word)
        return Result("aborted", "one two") if self.aborted else Result("final", "".join(words).strip())


def _chunks(events: list[tuple[str, Any]]) -> list[Any]:
    return [text for kind, text in events if kind == "chunk"]


async def test_a_bridge_that_wakes_after_its_message_was_claimed_by_a_replacement_goes_quiet(
    cp: ControlPlane, clock: Clock
) -> None:
    # Given a bridge streaming a reply that freezes past its lease and its heartbeat limit, while the
    # watchdog names a replacement task in TaskState and the replacement claims the message
    message = _queue(cp, "long story")
    replacement = "arn:aws:ecs:us-east-1:123456789012:task/test-cluster/t2"

    def freeze() -> None:
        clock.advance(300)
        assert cp.task_state.settle_own(
            USER, TASK, Status.IDLE, clock(), from_=(Status.RUNNING,), remove=("taskArn",)
        )
        _name_task(cp, replacement)
        assert cp.inbox.claim_next(USER, replacement, clock(), 60)

    runner, delivery = FreezingRunner(meanwhile=freeze), RecordingDelivery()
    fence = _fence(cp)

    # When it wakes up and its run goes on to the end
    await _loop(cp, runner, delivery, fence=fence).drain()

    # Then nothing more reached the user, nothing was stored, the run was stopped, and the replacement
    # still holds the message (one look at DynamoDB told the bridge so)
    assert _chunks(delivery.streams[message]) == ["one ", "two "]
    assert [kind for kind, _ in delivery.streams[message]] == ["chunk", "chunk"]
    assert cp.conversations.messages(USER, "conv-1").items[0]["role"] == "user"
    assert len(cp.conversations.messages(USER, "conv-1").items) == 1
    assert runner.aborted == ["agent:main:web:conv-1"]
    (item,) = cp.inbox.items(USER)
    assert (item.status, item.claimed_by) == ("claimed", replacement)
    assert fence.checks == 1


async def test_a_bridge_superseded_while_it_still_holds_the_claim_hands_the_message_back(
    cp: ControlPlane, clock: Clock
) -> None:
    # Given a bridge that froze past its heartbeat limit (not its lease): TaskState names another task
    message = _queue(cp, "long story")

    def freeze() -> None:
        clock.advance(170)
        assert cp.task_state.settle_own(
            USER, TASK, Status.IDLE, clock(), from_=(Status.RUNNING,), remove=("taskArn",)
        )

    runner, delivery = FreezingRunner(meanwhile=freeze), RecordingDelivery()

    # When it wakes up
    await _loop(cp, runner, delivery, fence=_fence(cp, lease_seconds=600)).drain()

    # Then it says and stores nothing more, and the message is queued again for the replacement
    assert [kind for kind, _ in delivery.streams[message]] == ["chunk", "chunk"]
    assert len(cp.conversations.messages(USER, "conv-1").items) == 1
    (item,) = cp.inbox.items(USER)
    assert (item.status, item.message_id) == ("queued", message)


async def test_a_claim_lost_without_any_sign_stores_and_delivers_no_final_answer(
    cp: ControlPlane, clock: Clock
) -> None:
    # Given a bridge whose confirmations look fresh, but whose item was taken over anyway (clock skew,
    # a release by task_events): nothing tells it before the end of the run
    message = _queue(cp, "hello")

    def taken() -> None:
        cp.inbox.release(cp.inbox.items(USER)[0], TASK)
        assert cp.inbox.claim_next(USER, "other-task", clock(), 60)

    delivery = RecordingDelivery()

    # When its run ends
    await _loop(cp, FreezingRunner(meanwhile=taken), delivery).drain()

    # Then the final transaction refuses it: no stored reply, no final frame, the other task holds it
    assert "end" not in [kind for kind, _ in delivery.streams[message]]
    assert len(cp.conversations.messages(USER, "conv-1").items) == 1
    assert cp.inbox.items(USER)[0].claimed_by == "other-task"


async def test_a_message_answered_before_is_completed_with_the_stored_answer_not_a_second_one(
    cp: ControlPlane,
) -> None:
    # Given a message whose answer is already in the history (stored by an earlier task)
    message = _queue(cp, "hello")
    cp.conversations.add_message(
        USER, "conv-1", "assistant", "the first answer", "web", cp.clock(), message_id=reply_id(message)
    )
    delivery = RecordingDelivery()

    # When a bridge answers it again
    await _loop(cp, ScriptedRunner(reply=lambda _: Result("final", "a second answer")), delivery).drain()

    # Then the history keeps the one answer, the user is shown that one, and the item is done
    replies = [m for m in cp.conversations.messages(USER, "conv-1").items if m["role"] == "assistant"]
    assert [m["content"] for m in replies] == ["the first answer"]
    assert delivery.streams[message][-1] == ("end", "the first answer")
    assert cp.inbox.items(USER) == []


async def test_a_warm_reply_costs_no_fencing_call(cp: ControlPlane) -> None:
    # Given a bridge whose claim and heartbeat were confirmed recently
    _queue(cp, "hello")
    fence = _fence(cp)

    # When it answers
    await _loop(cp, ScriptedRunner(), RecordingDelivery(), fence=fence).drain()

    # Then it never had to look at DynamoDB to know the message was its own
    assert fence.checks == 0 and cp.inbox.items(USER) == []


async def test_the_files_of_a_run_are_backed_up_before_its_answer_is_stored_or_shown(
    cp: ControlPlane,
) -> None:
    # Given a run whose answer reports a file written
    message = _queue(cp, "create file a.md")
    delivery = RecordingDelivery()
    seen_at_backup: list[tuple[int, list[str]]] = []

    async def backup() -> None:
        history = cp.conversations.messages(USER, "conv-1").items
        seen_at_backup.append((len(history), [kind for kind, _ in delivery.streams[message]]))

    runner = ScriptedRunner(reply=lambda _: Result("final", "Created a.md."))

    # When the loop answers it
    await _loop(cp, runner, delivery, before_final=backup).drain()

    # Then the backup ran once, before the reply was stored or its final frame sent; then both happened
    assert seen_at_backup == [(1, ["chunk", "chunk"])]
    assert delivery.streams[message][-1] == ("end", "Created a.md.")
    assert len(cp.conversations.messages(USER, "conv-1").items) == 2
