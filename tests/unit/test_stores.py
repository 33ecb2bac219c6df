"""The conditional semantics of each table, against moto's DynamoDB with the template's key schemas."""

from __future__ import annotations

from typing import Any

import pytest

from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.conversations import InvalidCursor
from serverless_openclaw.lifecycle import Capacity, Status
from serverless_openclaw.messages import InboxItem, IncomingMessage, reply_id
from serverless_openclaw.store import codec
from serverless_openclaw.store.inbox import Settled
from tests.fakes import Clock

USER = "user-a"


def _queue(cp: ControlPlane, *texts: str, user: str = USER) -> list[str]:
    ids = []
    for text in texts:
        accepted = cp.intake.accept(IncomingMessage(user, text, "web", "conv-1"), cp.clock())
        ids.append(accepted.message_id)
    return ids


# TaskState


def test_transition_loses_to_a_concurrent_writer(cp: ControlPlane) -> None:
    # Given two readers of the same Idle row
    a = cp.task_state.touch_activity(USER, cp.clock())
    b = cp.task_state.get(USER)

    # When both try to move it
    won = cp.task_state.transition(a, Status.STARTING, cp.clock())
    lost = cp.task_state.transition(b, Status.STARTING, cp.clock())

    # Then only the first wins and the version moved once
    assert won is not None and won.version == 1 and won.status is Status.STARTING
    assert lost is None
    assert cp.task_state.get(USER).version == 1


def test_transition_on_a_missing_row_creates_it_once(cp: ControlPlane) -> None:
    # Given no row at all for the user
    state = cp.task_state.get("new-user")
    assert state.version == 0 and state.status is Status.IDLE

    # When two writers race from that snapshot
    first = cp.task_state.transition(state, Status.STARTING, cp.clock())
    second = cp.task_state.transition(state, Status.STARTING, cp.clock())

    # Then exactly one creates it
    assert first is not None and second is None


def test_transition_refuses_unknown_attributes(cp: ControlPlane) -> None:
    with pytest.raises(ValueError, match="unknown TaskState attributes"):
        cp.task_state.transition(cp.task_state.get(USER), Status.RUNNING, cp.clock(), set_={"oops": 1})


def test_agent_attach_and_heartbeat_only_for_the_referenced_task(cp: ControlPlane) -> None:
    # Given a Starting row for task-1
    start = cp.task_state.transition(cp.task_state.get(USER), Status.STARTING, cp.clock())
    assert start is not None
    assert cp.task_state.record_launch(start, "task-1", Capacity.SPOT)

    # When task-2 (not referenced) tries to attach or heartbeat
    # Then it is refused; task-1 succeeds
    assert not cp.task_state.attach_agent(USER, "task-2", "conn-2", cp.clock())
    assert not cp.task_state.heartbeat(USER, "task-2", True, cp.clock())
    assert cp.task_state.attach_agent(USER, "task-1", "conn-1", cp.clock())
    assert cp.task_state.heartbeat(USER, "task-1", True, cp.clock() + 5)
    state = cp.task_state.get(USER)
    assert state.agent_connection_id == "conn-1" and state.busy and state.heartbeat_at == cp.clock() + 5


def test_record_launch_refused_after_the_row_moved_on(cp: ControlPlane) -> None:
    # Given a Starting row that the watchdog reset before RunTask returned
    start = cp.task_state.transition(cp.task_state.get(USER), Status.STARTING, cp.clock())
    assert start is not None
    assert cp.task_state.transition(start, Status.IDLE, cp.clock()) is not None

    # When the launch is recorded with the old version
    # Then it is refused (the caller stops the superseded task)
    assert not cp.task_state.record_launch(start, "task-1", Capacity.SPOT)


def test_detach_agent_only_clears_the_current_connection(cp: ControlPlane) -> None:
    # Given an agent attached with conn-2 (conn-1 was an earlier connection)
    start = cp.task_state.transition(cp.task_state.get(USER), Status.STARTING, cp.clock())
    assert start is not None and cp.task_state.record_launch(start, "task-1", Capacity.SPOT)
    assert cp.task_state.attach_agent(USER, "task-1", "conn-2", cp.clock())

    # When the old connection's disconnect arrives late
    # Then the current one is kept; the current one's disconnect clears it
    assert not cp.task_state.detach_agent(USER, "conn-1")
    assert cp.task_state.get(USER).agent_connection_id == "conn-2"
    assert cp.task_state.detach_agent(USER, "conn-2")
    assert cp.task_state.get(USER).agent_connection_id is None


def test_find_by_task_scans_rows(cp: ControlPlane) -> None:
    start = cp.task_state.transition(cp.task_state.get("u2"), Status.STARTING, cp.clock())
    assert start is not None and cp.task_state.record_launch(start, "task-9", Capacity.SPOT)
    found = cp.task_state.find_by_task("task-9")
    assert found is not None and found.user_id == "u2"
    assert cp.task_state.find_by_task("nope") is None


# Inbox


def test_two_bridges_never_claim_the_same_item(cp: ControlPlane) -> None:
    # Given three queued messages, each in its own conversation (one conversation is answered in turn)
    for text in ("a", "b", "c"):
        cp.intake.accept(IncomingMessage(USER, text, "web", f"conv-{text}"), cp.clock())

    # When two bridges claim alternately until empty
    got: dict[str, list[str]] = {"bridge-1": [], "bridge-2": []}
    while True:
        progressed = False
        for bridge in got:
            item = cp.inbox.claim_next(USER, bridge, cp.clock(), 60)
            if item:
                got[bridge].append(item.text)
                progressed = True
        if not progressed:
            break

    # Then each item went to exactly one bridge, oldest first
    assert sorted(got["bridge-1"] + got["bridge-2"]) == ["a", "b", "c"]
    assert got["bridge-1"] == ["a", "c"] and got["bridge-2"] == ["b"]


def test_a_conversation_is_answered_in_turn_while_others_go_on(cp: ControlPlane, clock: Clock) -> None:
    # Given two messages of one conversation and one of another, the first leased by a bridge that died
    _queue(cp, "first", "second")
    cp.intake.accept(IncomingMessage(USER, "elsewhere", "web", "conv-2"), clock())
    dead = cp.inbox.claim_next(USER, "dead-bridge", clock(), 60)
    assert dead is not None and dead.text == "first"

    # When a new bridge claims while that lease still runs
    other = cp.inbox.claim_next(USER, "new-bridge", clock(), 60)

    # Then it gets the other conversation's message, never "second" before "first"
    assert other is not None and other.text == "elsewhere"
    assert cp.inbox.claim_next(USER, "new-bridge", clock(), 60) is None
    clock.advance(61)
    again = cp.inbox.claim_next(USER, "new-bridge", clock(), 60)
    assert again is not None and again.text == "first"


def test_telegram_messages_are_claimed_in_message_id_order(cp: ControlPlane, clock: Clock) -> None:
    # Given Telegram messages 8, 6, 7 of one chat, queued in that (delivery) order
    for sent in (8, 6, 7):
        reply_to = {"chatId": 42, "messageId": sent}
        cp.intake.accept(
            IncomingMessage(USER, f"tg {sent}", "telegram", "conv-t", reply_to=reply_to), clock()
        )

    # When a bridge answers them one by one
    answered = []
    while (item := cp.inbox.claim_next(USER, "bridge", clock(), 60)) is not None:
        answered.append(item.text)
        assert cp.inbox.complete(item, "bridge")

    # Then in the order the person sent them
    assert answered == ["tg 6", "tg 7", "tg 8"]


def test_expired_lease_is_claimable_again_and_the_old_owner_loses_it(cp: ControlPlane, clock: Clock) -> None:
    # Given an item leased by a bridge that then died
    _queue(cp, "a")
    first = cp.inbox.claim_next(USER, "dead-bridge", clock(), 60)
    assert first is not None and first.attempts == 1
    assert cp.inbox.claim_next(USER, "new-bridge", clock(), 60) is None

    # When the lease runs out
    clock.advance(61)
    second = cp.inbox.claim_next(USER, "new-bridge", clock(), 60)

    # Then another bridge gets it (second attempt) and the dead one can no longer renew or delete it
    assert second is not None and second.attempts == 2 and second.claimed_by == "new-bridge"
    assert not cp.inbox.renew(first, "dead-bridge", clock(), 60)
    assert not cp.inbox.complete(first, "dead-bridge")
    assert cp.inbox.complete(second, "new-bridge")
    assert cp.inbox.items(USER) == []


def _answer(cp: ControlPlane, item: InboxItem, text: str, now: float) -> list[Any]:
    return cp.conversations.reply_writes(
        USER, "conv-1", reply_id(item.message_id), text, "web", now, {"replyTo": item.message_id}
    )


def _replies(cp: ControlPlane) -> list[str]:
    return [m["content"] for m in cp.conversations.messages(USER, "conv-1").items if m["role"] == "assistant"]


def _claimed_while_taskstate_names(cp: ControlPlane, task_arn: str) -> InboxItem:
    """A queued message claimed by "bridge", while TaskState names `task_arn`."""
    _queue(cp, "a")
    state = cp.task_state.transition(cp.task_state.get(USER), Status.STARTING, cp.clock())
    assert state is not None and cp.task_state.record_launch(state, task_arn, Capacity.SPOT)
    item = cp.inbox.claim_next(USER, "bridge", cp.clock(), 60)
    assert item is not None
    return item


def _settle_guarded(cp: ControlPlane, item: InboxItem, text: str) -> Settled:
    """ "bridge" records `text` as the answer, guarded by TaskState naming it."""
    return cp.inbox.settle(
        item,
        "bridge",
        cp.clock(),
        reply=_answer(cp, item, text, cp.clock()),
        guards=[cp.task_state.names_task_check(USER, "bridge")],
    )


def test_settle_stores_the_reply_and_deletes_the_item_in_one_write(cp: ControlPlane, clock: Clock) -> None:
    # Given an item we hold, and TaskState naming our task
    item = _claimed_while_taskstate_names(cp, "bridge")

    # When the answer is recorded
    settled = _settle_guarded(cp, item, "A")

    # Then the reply is stored under the id derived from the message and the item is gone
    assert settled is Settled.DONE
    assert _replies(cp) == ["A"]
    assert cp.conversations.message(USER, "conv-1", reply_id(item.message_id))["replyTo"] == item.message_id
    assert cp.inbox.items(USER) == []


def test_a_bridge_that_lost_its_claim_cannot_store_an_answer(cp: ControlPlane, clock: Clock) -> None:
    # Given a bridge whose lease ran out and another bridge that claimed the item since
    _queue(cp, "a")
    stale = cp.inbox.claim_next(USER, "stale-bridge", clock(), 60)
    assert stale is not None
    clock.advance(61)
    fresh = cp.inbox.claim_next(USER, "new-bridge", clock(), 60)
    assert fresh is not None

    # When the stale bridge tries to record its answer
    settled = cp.inbox.settle(stale, "stale-bridge", clock(), reply=_answer(cp, stale, "stale", clock()))

    # Then nothing is written: no reply, the item still the new bridge's
    assert settled is Settled.LOST
    assert _replies(cp) == []
    assert cp.inbox.items(USER)[0].claimed_by == "new-bridge"


def test_an_expired_lease_nobody_took_yet_cannot_store_either(cp: ControlPlane, clock: Clock) -> None:
    _queue(cp, "a")
    item = cp.inbox.claim_next(USER, "bridge", clock(), 60)
    assert item is not None
    clock.advance(60)
    assert cp.inbox.settle(item, "bridge", clock(), reply=_answer(cp, item, "late", clock())) is Settled.LOST
    assert _replies(cp) == [] and cp.inbox.items(USER)[0].status == "claimed"


def test_a_superseded_task_cannot_store_though_it_holds_the_claim(cp: ControlPlane, clock: Clock) -> None:
    # Given TaskState names another task (the watchdog replaced ours), while our claim still runs
    item = _claimed_while_taskstate_names(cp, "replacement")

    # When our bridge records its answer with the TaskState guard
    settled = _settle_guarded(cp, item, "A")

    # Then it is refused and nothing changed
    assert settled is Settled.LOST
    assert _replies(cp) == [] and cp.inbox.items(USER)[0].claimed_by == "bridge"


def test_a_message_is_never_answered_twice_in_the_history(cp: ControlPlane, clock: Clock) -> None:
    # Given a message whose reply row exists already
    _queue(cp, "a")
    item = cp.inbox.claim_next(USER, "bridge", clock(), 60)
    assert item is not None
    cp.conversations.add_message(
        USER, "conv-1", "assistant", "first", "web", clock(), message_id=reply_id(item.message_id)
    )

    # When a second answer is recorded for it
    settled = cp.inbox.settle(item, "bridge", clock(), reply=_answer(cp, item, "second", clock()))

    # Then it is refused as answered before: one reply, the item untouched (we still hold it)
    assert settled is Settled.ANSWERED_BEFORE
    assert _replies(cp) == ["first"]
    assert cp.inbox.items(USER)[0].claimed_by == "bridge"


def test_settle_can_mark_the_item_failed_with_its_error_reply(cp: ControlPlane, clock: Clock) -> None:
    _queue(cp, "a")
    item = cp.inbox.claim_next(USER, "bridge", clock(), 60)
    assert item is not None
    settled = cp.inbox.settle(
        item, "bridge", clock(), reply=_answer(cp, item, "provider down", clock()), failed="provider down"
    )
    assert settled is Settled.DONE and _replies(cp) == ["provider down"]
    (failed,) = cp.inbox.items(USER)
    assert (failed.status, failed.last_error, failed.claimed_by) == ("failed", "provider down", None)


def test_renew_keeps_the_lease_during_a_long_run(cp: ControlPlane, clock: Clock) -> None:
    _queue(cp, "long")
    item = cp.inbox.claim_next(USER, "bridge", clock(), 60)
    assert item is not None
    clock.advance(50)
    assert cp.inbox.renew(item, "bridge", clock(), 60)
    clock.advance(50)  # 100 s after the claim, 50 s after the renewal
    assert cp.inbox.claim_next(USER, "other", clock(), 60) is None


def test_release_requeues_and_mark_failed_keeps_it_visible(cp: ControlPlane, clock: Clock) -> None:
    # Given a claimed item released on shutdown
    _queue(cp, "a")
    item = cp.inbox.claim_next(USER, "bridge", clock(), 60)
    assert item is not None and cp.inbox.release(item, "bridge")
    assert [i.text for i in cp.inbox.pending(USER, clock())] == ["a"]

    # When it is given up on
    failed = cp.inbox.fail_pending(USER, "the agent could not start", clock())

    # Then it is no longer pending but still there, failed, with a reason and an expiry
    assert [i.text for i in failed] == ["a"]
    assert cp.inbox.pending(USER, clock()) == []
    (kept,) = cp.inbox.items(USER)
    assert kept.status == "failed" and kept.last_error == "the agent could not start"
    assert list(cp.inbox.users_with_pending(clock())) == []


def test_users_with_pending_lists_each_user_once(cp: ControlPlane, clock: Clock) -> None:
    _queue(cp, "a", "b")
    _queue(cp, "c", user="user-b")
    _queue(cp, "d", user="user-c")
    item = cp.inbox.claim_next("user-c", "bridge", clock(), 60)
    assert item is not None
    assert sorted(cp.inbox.users_with_pending(clock())) == [USER, "user-b"]
    clock.advance(61)
    assert sorted(cp.inbox.users_with_pending(clock())) == [USER, "user-b", "user-c"]


# Conversations


def test_conversation_pages_newest_first_with_a_cursor(cp: ControlPlane, clock: Clock) -> None:
    # Given five messages in one conversation
    for n in range(5):
        cp.conversations.add_message(USER, "conv-1", "user", f"m{n}", "web", clock())
        clock.advance(1)

    # When read two at a time
    first = cp.conversations.messages(USER, "conv-1", limit=2)
    second = cp.conversations.messages(USER, "conv-1", limit=2, cursor=first.next_cursor)
    third = cp.conversations.messages(USER, "conv-1", limit=2, cursor=second.next_cursor)

    # Then the pages are newest first, contiguous, and no internal keys leak
    contents = [m["content"] for page in (first, second, third) for m in page.items]
    assert contents == ["m4", "m3", "m2", "m1", "m0"]
    assert all("PK" not in m and "SK" not in m for m in first.items)


def test_cursor_of_another_user_or_forged_is_refused(cp: ControlPlane) -> None:
    for n in range(3):
        cp.conversations.add_message("victim", "conv-1", "user", f"secret {n}", "web", n)
    victim_cursor = cp.conversations.messages("victim", "conv-1", limit=1).next_cursor
    assert victim_cursor
    with pytest.raises(InvalidCursor):
        cp.conversations.messages(USER, "conv-1", cursor=victim_cursor)
    with pytest.raises(InvalidCursor):
        cp.conversations.messages(USER, "conv-1", cursor="not-a-cursor!!")
    forged = codec.encode_cursor(codec.dump({"PK": f"USER#{USER}", "SK": "CONV#x"}))
    assert forged
    with pytest.raises(InvalidCursor):
        cp.conversations.messages(USER, "conv-1", cursor=forged)


def test_delete_conversation_removes_header_and_messages(cp: ControlPlane) -> None:
    for n in range(30):
        cp.conversations.add_message(USER, "conv-1", "user", f"m{n}", "web", n)
    cp.conversations.add_message(USER, "conv-2", "user", "other", "web", 1)
    assert cp.conversations.delete(USER, "conv-1")
    assert cp.conversations.get(USER, "conv-1") is None
    assert cp.conversations.messages(USER, "conv-1").items == []
    assert [c["conversationId"] for c in cp.conversations.conversations(USER).items] == ["conv-2"]
    assert not cp.conversations.delete(USER, "conv-1")


def test_conversation_title_is_the_first_line_of_the_first_message(cp: ControlPlane) -> None:
    cp.intake.accept(IncomingMessage(USER, "Plan my trip\nto Lisbon please", "web", "c9"), 1)
    cp.intake.accept(IncomingMessage(USER, "second message", "web", "c9"), 2)
    header = cp.conversations.get(USER, "c9")
    assert header is not None
    assert header["title"] == "Plan my trip" and header["createdAt"] == 1 and header["updatedAt"] == 2


# Settings and connections


def test_settings_keep_history(cp: ControlPlane) -> None:
    cp.settings.put(USER, {"idleTimeoutMinutes": 30, "timezone": "Europe/Paris"}, 100.0)
    cp.settings.put(USER, {"idleTimeoutMinutes": 60}, 200.0)
    assert cp.settings.get_all(USER) == {"idleTimeoutMinutes": 60, "timezone": "Europe/Paris"}
    assert [h["value"] for h in cp.settings.history(USER, "idleTimeoutMinutes")] == [60, 30]
    assert cp.settings.get_all("user-b") == {}


def test_connections_by_user_and_kind(cp: ControlPlane) -> None:
    cp.connections.put(Connection("c1", USER, "client", 1))
    cp.connections.put(Connection("c2", USER, "client", 2))
    cp.connections.put(Connection("a1", USER, "agent", 3, task_arn="task-1"))
    cp.connections.put(Connection("x1", "user-b", "client", 4))
    assert [c.connection_id for c in cp.connections.for_user(USER)] == ["c1", "c2"]
    assert [c.connection_id for c in cp.connections.for_user(USER, "agent")] == ["a1"]
    removed = cp.connections.delete("c1")
    assert removed is not None and removed.user_id == USER
    assert cp.connections.delete("c1") is None


def test_agent_token_registration_and_attach_follow_the_current_token(cp: ControlPlane) -> None:
    # Given a Starting row for task-1 and a bridge that registered its token hash
    start = cp.task_state.transition(cp.task_state.get(USER), Status.STARTING, cp.clock())
    assert start is not None and cp.task_state.record_launch(start, "task-1", Capacity.SPOT)
    assert not cp.task_state.register_agent_token(USER, "task-2", "h-other")  # not the row's task
    assert cp.task_state.register_agent_token(USER, "task-1", "h1")

    # When the bridge re-registers (a new token) while a connect checked against the old hash
    assert cp.task_state.register_agent_token(USER, "task-1", "h2")

    # Then the stale check cannot attach, the current one can
    assert not cp.task_state.attach_agent(USER, "task-1", "conn-old", cp.clock(), "h1")
    assert cp.task_state.attach_agent(USER, "task-1", "conn-new", cp.clock(), "h2")
    assert cp.task_state.get(USER).agent_connection_id == "conn-new"


def test_bridge_settles_only_its_own_row(cp: ControlPlane) -> None:
    # Given a Starting row for task-1, after two failed starts
    start = cp.task_state.transition(
        cp.task_state.get(USER), Status.STARTING, cp.clock(), set_={"startAttempts": 2}
    )
    assert start is not None and cp.task_state.record_launch(start, "task-1", Capacity.SPOT)

    # When task-2 claims to be ready, then task-1 does
    # Then only task-1 moves the row to Running (version bumped, attempts reset)
    assert not cp.task_state.settle_own(USER, "task-2", Status.RUNNING, 5.0, from_=(Status.STARTING,))
    assert cp.task_state.get(USER).status is Status.STARTING
    assert cp.task_state.settle_own(
        USER, "task-1", Status.RUNNING, 5.0, from_=(Status.STARTING,), set_={"startAttempts": 0}
    )
    running = cp.task_state.get(USER)
    assert running.status is Status.RUNNING and running.version == start.version + 1
    assert running.start_attempts == 0 and running.changed_at == 5.0
    assert not cp.task_state.settle_own(USER, "task-1", Status.RUNNING, 6.0, from_=(Status.STARTING,))

    # And on shutdown it releases the row, clearing the live task
    assert cp.task_state.settle_own(
        USER, "task-1", Status.IDLE, 7.0, from_=(Status.RUNNING, Status.STOPPING), remove=("taskArn", "busy")
    )
    idle = cp.task_state.get(USER)
    assert idle.status is Status.IDLE and idle.task_arn is None and idle.changed_at == 7.0


def test_reply_stored_under_a_given_message_id(cp: ControlPlane) -> None:
    message_id = cp.conversations.add_message(
        USER, "conv-1", "assistant", "hi", "web", 1.0, message_id="reply-1", extra={"state": "aborted"}
    )
    (stored,) = cp.conversations.messages(USER, "conv-1").items
    assert message_id == "reply-1" and stored["messageId"] == "reply-1" and stored["state"] == "aborted"
