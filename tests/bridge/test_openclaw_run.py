"""Following one message's run through its session's events, without a socket: what gets streamed, shown,
passed on, and how the run ends."""

from __future__ import annotations

from typing import Any

from bridge.openclaw_frames import AgentEvent, ChatEvent, ChatSendAck
from bridge.openclaw_run import (
    Delta,
    Disconnected,
    Finished,
    Resend,
    RunFollower,
    RunResult,
    Status,
    Step,
    Tool,
    reply_from_history,
)

ALICE = "agent:main:conversation:alice"
BOB = "agent:main:conversation:bob"
OURS = "run-ours"


def follower(status: str = "started", generation: int = 1) -> RunFollower:
    """A follower whose message the gateway has just accepted as run OURS."""
    run = RunFollower(ALICE)
    run.accepted(ChatSendAck(OURS, status), generation)
    return run


def feed(run: RunFollower, *items: ChatEvent | AgentEvent | Disconnected) -> list[Step]:
    return [step for item in items for step in run.feed(item)]


def streamed(steps: list[Step]) -> str:
    return "".join(step.text for step in steps if isinstance(step, Delta))


def finished(steps: list[Step]) -> RunResult | None:
    results = [step.result for step in steps if isinstance(step, Finished)]
    assert len(results) <= 1
    return results[0] if results else None


def status(run_id: str, phase: str, session: str = ALICE) -> ChatEvent:
    return ChatEvent(run_id, session, "status", phase=phase)


def delta(
    run_id: str, piece: str, so_far: str | None = None, *, replace: bool = False, session: str = ALICE
) -> ChatEvent:
    """A delta event; `so_far` is the cumulative snapshot its `message` carries (None: no message)."""
    return ChatEvent(
        run_id,
        session,
        "delta",
        delta_text=piece,
        replace=replace,
        has_message=so_far is not None,
        snapshot=so_far,
    )


def final(run_id: str, text: str | None, session: str = ALICE) -> ChatEvent:
    """A final event; text None is the `final` without `message` of an input merged into another run."""
    return ChatEvent(
        run_id, session, "final", has_message=text is not None, snapshot=text, stop_reason="stop"
    )


def tool(run_id: str, stream: str = "tool", session: str = ALICE) -> AgentEvent:
    payload = {"runId": run_id, "sessionKey": session, "stream": stream, "data": {"name": "ls"}}
    return AgentEvent(run_id, session, stream, payload)


# ------------------------------------------------------------------------------------------- one run


def test_a_run_streams_its_phases_and_text_and_ends_with_the_final_reply() -> None:
    # Given a message the gateway accepted
    run = follower()

    # When its run reports a phase, streams its reply and ends
    steps = feed(
        run,
        status(OURS, "starting_model"),
        delta(OURS, "Echo: ", "Echo: "),
        delta(OURS, "hello", "Echo: hello"),
        final(OURS, "Echo: hello"),
    )

    # Then the phase is shown, each new piece streamed once, and the run ends with the full reply
    assert steps == [
        Status("starting_model"),
        Delta("Echo: "),
        Delta("hello"),
        Finished(RunResult("final", "Echo: hello", OURS, stop_reason="stop")),
    ]
    assert run.run_id == OURS


def test_a_replacing_delta_is_streamed_as_a_rewrite_then_what_follows_as_increments() -> None:
    # Given a run whose second delta rewrites the first
    run = follower()

    # When it streams "Helo", then replaces it with "Hello", then adds " there"
    steps = feed(
        run,
        delta(OURS, "Helo"),
        delta(OURS, "Hello", replace=True),
        delta(OURS, " there"),
        final(OURS, "Hello there"),
    )

    # Then the rewrite replaces what was streamed (no "HeloHello"), what follows it is an increment
    assert [step for step in steps if isinstance(step, Delta)] == [
        Delta("Helo"),
        Delta("Hello", rewrite=True),
        Delta(" there"),
    ]
    assert finished(steps) == RunResult("final", "Hello there", OURS, stop_reason="stop")


def test_the_final_text_falls_back_to_the_deltas_when_the_event_has_no_text() -> None:
    # Given a run that streamed its reply
    run = follower()

    # When its final event carries a message without text
    ending = ChatEvent(OURS, ALICE, "final", has_message=True, snapshot=None)
    steps = feed(run, delta(OURS, "all of it"), ending)

    # Then the reply is what the deltas built
    assert finished(steps) == RunResult("final", "all of it", OURS)


def test_a_failed_run_ends_with_the_gateways_readable_error() -> None:
    # Given a run whose model provider fails
    run = follower()
    failure = ChatEvent(OURS, ALICE, "error", error_message="provider down (HTTP 500)", error_kind="unknown")

    # When the error event arrives
    steps = feed(run, status(OURS, "starting_model"), failure)

    # Then the run ends in error with the gateway's reason and kind
    assert finished(steps) == RunResult(
        "error", "", OURS, error_message="provider down (HTTP 500)", error_kind="unknown"
    )


def test_an_error_without_a_reason_still_says_the_run_failed() -> None:
    steps = feed(follower(), ChatEvent(OURS, ALICE, "error"))
    assert finished(steps) == RunResult("error", "", OURS, error_message="the model run failed")


def test_an_aborted_run_ends_with_its_partial_text() -> None:
    # Given a run streaming its reply
    run = follower()

    # When it is aborted mid-way
    stopped = ChatEvent(OURS, ALICE, "aborted", has_message=True, snapshot="tok0 tok1 ", stop_reason="rpc")
    steps = feed(run, delta(OURS, "tok0 ", "tok0 "), delta(OURS, "tok1 ", "tok0 tok1 "), stopped)

    # Then it ends as aborted with what was said so far
    assert finished(steps) == RunResult("aborted", "tok0 tok1 ", OURS, stop_reason="rpc")


def test_nothing_happens_before_the_gateway_accepted_the_message() -> None:
    # Given a follower whose message has not been accepted yet
    run = RunFollower(ALICE)

    # When events arrive
    steps = feed(run, delta(OURS, "early"), final(OURS, "early"), Disconnected(1))

    # Then none of them is acted on, and no run is ours yet
    assert steps == []
    assert run.run_id is None


# ------------------------------------------------------------------------------------------- other runs


def test_events_of_other_sessions_are_ignored() -> None:
    # Given our run
    run = follower()

    # When another session's run streams, ends, and uses a tool in between ours
    steps = feed(
        run,
        delta("run-bob", "LEAK", "LEAK", session=BOB),
        delta(OURS, "Only ", "Only "),
        tool("run-bob", session=BOB),
        final("run-bob", "LEAK", session=BOB),
        delta(OURS, "mine", "Only mine"),
        final(OURS, "Only mine"),
    )

    # Then only our run's text was streamed and returned
    assert streamed(steps) == "Only mine"
    assert steps[-1] == Finished(RunResult("final", "Only mine", OURS, stop_reason="stop"))
    assert not any(isinstance(step, Tool) for step in steps)


def test_another_run_of_the_session_ending_does_not_end_ours() -> None:
    # Given our run and a stale run in the same session
    run = follower()

    # When the stale run streams and ends (even without a message, like a merged input) before ours speaks
    steps = feed(run, delta("stale", "STALE"), final("stale", None), delta(OURS, "mine"), final(OURS, "mine"))

    # Then ours is unaffected
    assert streamed(steps) == "mine"
    assert finished(steps) == RunResult("final", "mine", OURS, stop_reason="stop")


def test_a_message_of_another_session_is_never_adopted_after_a_merge() -> None:
    # Given our input merged while no other run of our session had spoken
    run = follower()
    feed(run, final(OURS, None))

    # When another session's run speaks and ends, and then the run of our session does
    steps = feed(
        run,
        delta("run-bob", "LEAK", "LEAK", session=BOB),
        final("run-bob", "LEAK", session=BOB),
        delta("held", "Held", "Held"),
        final("held", "Held"),
    )

    # Then the reply is our session's run's
    assert streamed(steps) == "Held"
    assert finished(steps) == RunResult("merged", "Held", OURS, stop_reason="stop")


# ------------------------------------------------------------------------------------------- merged input


def test_input_merged_into_an_older_run_streams_and_returns_that_runs_reply() -> None:
    # Given a run that was already streaming in the session when our message was accepted (its first
    # delta was sent before we listened: only its snapshot has it)
    run = follower()
    before = feed(run, delta("older", "turn", "Held: turn"))

    # When the gateway ends our run at once without a message (it steered our input into the older run)
    merging = feed(run, final(OURS, None))
    rest = feed(run, delta("older", "\n\nours", "Held: turn\n\nours"), final("older", "Held: turn\n\nours"))

    # Then nothing was streamed before the merge, then that run's text from its start, and its end is ours
    assert before == []
    assert streamed(merging) == "Held: turn"
    assert streamed(rest) == "\n\nours"
    assert finished(rest) == RunResult("merged", "Held: turn\n\nours", OURS, stop_reason="stop")


def test_input_merged_with_two_runs_active_follows_the_newest() -> None:
    # Given two other runs active in the session, the newer one started after the older
    run = follower()
    feed(run, delta("older", "old text", "old text"), delta("newer", "new text", "new text"))

    # When our input is merged, and both runs go on
    steps = feed(
        run,
        final(OURS, None),
        delta("older", " more", "old text more"),
        final("older", "old text more"),
        delta("newer", " more", "new text more"),
        final("newer", "new text more"),
    )

    # Then the newer run's reply is the one streamed and returned; the older one ending changes nothing
    assert streamed(steps) == "new text more"
    assert finished(steps) == RunResult("merged", "new text more", OURS, stop_reason="stop")


def test_input_merged_before_the_other_run_spoke_follows_the_next_run_to_speak() -> None:
    # Given our input merged before any other run of the session has sent an event
    run = follower()
    merging = feed(run, final(OURS, None))

    # When a run then speaks, having said more than we saw (its snapshot holds it all)
    steps = feed(
        run,
        delta("recovered", "turn", "Held: turn"),
        delta("recovered", " and ours", "Held: turn and ours"),
        final("recovered", "Held: turn and ours"),
    )

    # Then its whole reply is streamed from its start and returned as ours
    assert merging == []
    assert streamed(steps) == "Held: turn and ours"
    assert finished(steps) == RunResult("merged", "Held: turn and ours", OURS, stop_reason="stop")


def test_input_is_never_merged_into_a_run_that_has_ended() -> None:
    # Given another run of the session that has ended
    run = follower()
    feed(run, delta("ended", "old reply", "old reply"), final("ended", "old reply"))

    # When our input is merged, and then a run speaks
    merging = feed(run, final(OURS, None))
    steps = feed(run, delta("answering", "new reply", "new reply"), final("answering", "new reply"))

    # Then the ended run's text is not taken for ours; the run that speaks next answers
    assert merging == []
    assert finished(steps) == RunResult("merged", "new reply", OURS, stop_reason="stop")


def test_a_merged_input_ends_with_the_other_runs_failure() -> None:
    # Given our input merged into another active run
    run = follower()
    feed(run, status("other", "starting_model"), final(OURS, None))

    # When that run fails
    steps = feed(run, ChatEvent("other", ALICE, "error", error_message="provider down"))

    # Then ours ends in the same error
    assert finished(steps) == RunResult("error", "", OURS, error_message="provider down")


def test_an_empty_final_after_text_is_our_reply_not_a_merge() -> None:
    # Given our run that has streamed text
    run = follower()

    # When it ends with a final that carries no message
    steps = feed(run, delta(OURS, "said it"), final(OURS, None))

    # Then it is our own final reply
    assert finished(steps) == RunResult("final", "said it", OURS, stop_reason="stop")


# ------------------------------------------------------------------------------------------- tools


def test_tool_events_are_passed_on_only_for_the_followed_run() -> None:
    # Given our run and another run of the session
    run = follower()
    mine = tool(OURS)

    # When both use tools, and ours also streams assistant text on the agent stream
    steps = feed(run, tool("other"), tool(OURS, "item"), mine, tool(OURS, "assistant"))

    # Then only our run's "item" and "tool" events are passed on, as the gateway sent them
    assert steps == [Tool(tool(OURS, "item").payload), Tool(mine.payload)]


def test_tool_events_follow_the_run_our_input_was_merged_into() -> None:
    # Given our input merged into another active run
    run = follower()
    feed(run, status("other", "starting_model"), final(OURS, None))

    # When that run and our (finished) one send tool events
    steps = feed(run, tool(OURS), tool("other"))

    # Then the merged-into run's are passed on
    assert steps == [Tool(tool("other").payload)]


# ------------------------------------------------------------------------------------------- reconnects


def test_a_lost_connection_asks_for_a_resend_and_the_next_snapshot_fills_the_gap() -> None:
    # Given a run that streamed part of its reply on connection 1
    run = follower(generation=1)
    before = feed(run, delta(OURS, "part one, ", "part one, "))

    # When that connection is lost, the resend is answered in_flight on connection 2, and the run goes on
    lost = feed(run, Disconnected(1))
    run.accepted(ChatSendAck(OURS, "in_flight"), 2)
    after = feed(
        run,
        delta(OURS, "part four", "part one, part two, part four"),
        final(OURS, "part one, part two, part four"),
    )

    # Then the gap is streamed from the snapshot, and the whole reply adds up
    assert lost == [Resend()]
    assert streamed(before + after) == "part one, part two, part four"
    assert finished(after) == RunResult("final", "part one, part two, part four", OURS, stop_reason="stop")


def test_after_a_lost_connection_the_snapshot_fills_the_gap_whatever_the_resend_answer() -> None:
    # Given a run that lost its connection after streaming part of its reply
    run = follower(generation=1)
    feed(run, delta(OURS, "one, ", "one, "), Disconnected(1))

    # When the resend's answer has no status, and the run goes on
    run.accepted(ChatSendAck(OURS, None), 2)
    steps = feed(run, delta(OURS, "three", "one, two, three"))

    # Then what was missed is streamed all the same
    assert streamed(steps) == "two, three"


def test_a_message_already_in_flight_is_joined_with_its_text_so_far() -> None:
    # Given a message whose run is already going on (a new bridge sending it again with the same key)
    run = follower(status="in_flight")

    # When the run's next delta arrives
    steps = feed(run, delta(OURS, "three", "one, two, three"))

    # Then its whole text so far is streamed
    assert streamed(steps) == "one, two, three"


def test_the_loss_of_an_earlier_connection_is_not_this_attempts() -> None:
    # Given a message accepted again on connection 2
    run = follower(generation=2)

    # When the loss of connection 1 is reported late
    steps = feed(run, Disconnected(1), delta(OURS, "still here"), final(OURS, "still here"))

    # Then the run goes on
    assert Resend() not in steps
    assert finished(steps) == RunResult("final", "still here", OURS, stop_reason="stop")


def test_a_gateway_that_forgot_the_run_starts_the_reply_afresh() -> None:
    # Given a run that streamed part of a reply before the gateway died
    run = follower(generation=1)
    before = feed(run, delta(OURS, "doomed ", "doomed "), Disconnected(1))

    # When the restarted gateway answers the resend with a new run, which streams its own reply
    run.accepted(ChatSendAck("run-afresh", "started"), 2)
    after = feed(run, delta("run-afresh", "Echo", "Echo"), delta("run-afresh", ": hi", "Echo: hi"))
    ending = feed(run, final("run-afresh", None))

    # Then the new reply replaces the lost one (not glued to it), is kept from its start, names the new run
    assert streamed(before) == "doomed "
    assert [step for step in after if isinstance(step, Delta)] == [Delta("Echo", rewrite=True), Delta(": hi")]
    assert finished(ending) == RunResult("final", "Echo: hi", "run-afresh", stop_reason="stop")
    assert run.run_id == "run-afresh"


def test_a_restarted_run_writing_the_same_reply_again_streams_only_what_goes_past_what_was_shown() -> None:
    # Given a run that streamed "w1 w2 w3" before the gateway died
    run = follower(generation=1)
    before = feed(run, delta(OURS, "w1 w2", "w1 w2"), delta(OURS, " w3", "w1 w2 w3"), Disconnected(1))

    # When the restarted gateway runs the message afresh and writes the same words again, then more
    run.accepted(ChatSendAck("run-afresh", "started"), 2)
    again = feed(run, delta("run-afresh", "w1", "w1"), delta("run-afresh", " w2 w3", "w1 w2 w3"))
    more = feed(run, delta("run-afresh", " w4", "w1 w2 w3 w4"), final("run-afresh", None))

    # Then the words already shown are not streamed a second time ("w1 w2 w3 w1 ..."), only the new one is
    assert streamed(before) == "w1 w2 w3"
    assert again == []
    assert [step for step in more if isinstance(step, Delta)] == [Delta(" w4")]
    assert finished(more) == RunResult("final", "w1 w2 w3 w4", "run-afresh", stop_reason="stop")


def test_a_restarted_run_that_writes_another_reply_replaces_what_was_shown() -> None:
    # Given a run that streamed "w1 w2 w3" before the gateway died
    run = follower(generation=1)
    feed(run, delta(OURS, "w1 w2 w3", "w1 w2 w3"), Disconnected(1))

    # When the run afresh starts like it, then says something else
    run.accepted(ChatSendAck("run-afresh", "started"), 2)
    steps = feed(run, delta("run-afresh", "w1", "w1"), delta("run-afresh", " x", "w1 x"))

    # Then nothing is streamed while it repeats, and its own text replaces the old one once it differs
    assert [step for step in steps if isinstance(step, Delta)] == [Delta("w1 x", rewrite=True)]


def test_a_resync_ignores_a_snapshot_that_contradicts_what_was_streamed() -> None:
    # Given a run that lost its connection after streaming "abc"
    run = follower(generation=1)
    feed(run, delta(OURS, "abc", "abc"), Disconnected(1))
    run.accepted(ChatSendAck(OURS, "in_flight"), 2)

    # When the next snapshot does not extend it, and a later one does
    odd = feed(run, delta(OURS, "d", "xyz"))
    good = feed(run, delta(OURS, "e", "abcdXe"))

    # Then the odd snapshot is not trusted; the next matching one is
    assert streamed(odd) == "d"
    assert streamed(good) == "Xe"


# ------------------------------------------------------------------------------------------- history


def test_a_reply_recovered_from_history_is_the_last_answer_after_our_message() -> None:
    # Given a transcript with an earlier exchange, our message (stored with our key), and its reply
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "earlier", "__openclaw": {"idempotencyKey": "k0:user"}},
        {"role": "assistant", "content": [{"type": "text", "text": "earlier reply"}]},
        {"role": "user", "content": "ours", "__openclaw": {"idempotencyKey": "k1:user"}},
        {"role": "assistant", "content": [{"type": "text", "text": "our reply"}]},
        {"role": "assistant", "content": []},
    ]

    # When / Then
    assert reply_from_history(messages, "k1") == "our reply"
    assert reply_from_history(messages[:3], "k1") is None
    assert reply_from_history(messages[:2], "unknown-key") == "earlier reply"
