"""One `chat.send` followed to its end through its session's events, as a pure state machine.

No socket, no queue, no callback: the client tells a `RunFollower` each answer the gateway gives to the
(re-)sent message, then feeds it the session's `chat` and `agent` events in order, and a `Disconnected`
marker when the connection they came on closes. For each it answers what to do: `Delta` (new reply text
to stream, or a rewrite of all that was streamed), `Status` (a phase to show), `Tool` (an agent event to
pass on), `Finished` (the `RunResult`) or `Resend` (the connection was lost mid-run: send it again).

What it copes with (docs/openclaw.md, Protocol):
- merged input: a message sent while another run of the session is active is steered into that run,
  which answers both; ours ends at once with a `final` without `message`, and the reply is the other
  run's (the newest one active, or the next one to speak if none has yet), tracked from its start;
- reconnects: events sent while we were away are lost, so the reply is rebuilt from the next cumulative
  snapshot; a gateway that was restarted and forgot the run starts it afresh (`started` on the resend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.openclaw_frames import AgentEvent, ChatEvent, ChatSendAck, message_text
from serverless_openclaw.observability import logger

RunState = Literal["final", "error", "aborted", "merged"]
TOOL_STREAMS = ("tool", "item")


@dataclass(frozen=True)
class RunResult:
    """How one `chat.send` ended and the full reply text.

    state "merged": the gateway steered the input into another run of the session; `text` is the reply of
    that run (which may also answer the other run's input), or "" if unknown.
    """

    state: RunState
    text: str
    run_id: str
    error_message: str | None = None
    error_kind: str | None = None
    stop_reason: str | None = None


@dataclass(frozen=True)
class Disconnected:
    """The connection numbered `generation` is gone: events of the run may have been missed."""

    generation: int


@dataclass(frozen=True)
class Delta:
    """New reply text to stream: what follows the text streamed so far, or (`rewrite`) all of it, replacing
    what was streamed (the gateway rewrote the reply, or a restarted run wrote another one)."""

    text: str
    rewrite: bool = False


@dataclass(frozen=True)
class Status:
    """A phase of the run's start to show (preparing the workspace, starting the model...)."""

    phase: str


@dataclass(frozen=True)
class Tool:
    """An `agent` event of the followed run's tool progress, to pass on as the gateway sent it."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Finished:
    """The run is over."""

    result: RunResult


@dataclass(frozen=True)
class Resend:
    """The connection was lost mid-run: send the message again with the same idempotency key."""


Step = Delta | Status | Tool | Finished | Resend


class _Reply:
    """The reply text as the deltas build it, and what the user has been shown of it."""

    def __init__(self) -> None:
        self.text = ""
        self.emitted = ""  # the text as streamed so far: what every channel shows
        self.resync = False  # events were missed while disconnected: trust the next cumulative snapshot
        self.replaying = False  # a run started afresh: it writes again what was shown, nothing to stream

    def apply(self, event: ChatEvent) -> Delta | None:
        """Apply one `delta` event; return what to stream (None when nothing new)."""
        text = event.delta_text if event.replace else self.text + event.delta_text
        # Deltas sent while we were disconnected are lost; the cumulative snapshot holds them.
        snapshot = event.snapshot
        if self.resync and snapshot is not None and snapshot.startswith(self.text):
            text, self.resync = snapshot, False
        return self._set(text)

    def adopt(self, text: str) -> Delta | None:
        """Start over from another run's text so far; return what to stream."""
        self.reset()
        # We may have joined that run late: its next cumulative snapshot fills in what we missed.
        self.resync = True
        return self._set(text)

    def reset(self) -> None:
        """Forget the text (a run started afresh); a pending resync stays pending.

        What was shown stays shown: a run that writes it again streams only what goes past it, so nobody
        sees "w1 w1 w2"; one that writes something else rewrites it.
        """
        self.text = ""
        self.replaying = bool(self.emitted)

    def _set(self, text: str) -> Delta | None:
        self.text = text
        if text.startswith(self.emitted):
            increment, self.emitted, self.replaying = text[len(self.emitted) :], text, False
            return Delta(increment) if increment else None
        if self.replaying and self.emitted.startswith(text):
            return None  # still writing again what is already shown
        self.emitted, self.replaying = text, False
        return Delta(text, rewrite=True)


@dataclass
class _Attempt:
    """What one accepted (re-)send follows: our run, or the run our input was merged into."""

    run_id: str
    generation: int
    follow: str | None  # the run whose events make the reply; None: merged, waiting for it to speak
    merged: bool = False
    others: dict[str, str] = field(default_factory=dict)  # text of the session's other runs, oldest first


class RunFollower:
    """Follows one message's run in its session and says what to do about each event."""

    def __init__(self, session_key: str) -> None:
        self.session_key = session_key
        self._reply = _Reply()
        self._attempt: _Attempt | None = None

    @property
    def run_id(self) -> str | None:
        """Our run as the gateway last named it; None until it has accepted the message."""
        return self._attempt.run_id if self._attempt is not None else None

    def accepted(self, ack: ChatSendAck, generation: int) -> None:
        """The gateway accepted the message (again) on connection `generation`: follow its run from here."""
        if self._attempt is not None and ack.status == "started":
            # A restarted gateway forgot the first attempt and runs the message afresh.
            logger.warning("run restarted by the gateway", session_key=self.session_key, run_id=ack.run_id)
            self._reply.reset()
        # In flight: it went on while we were away, and its next snapshot holds what we missed.
        self._reply.resync = self._reply.resync or ack.status == "in_flight"
        self._attempt = _Attempt(ack.run_id, generation, follow=ack.run_id)

    def feed(self, item: ChatEvent | AgentEvent | Disconnected) -> list[Step]:
        """What to do about one event of the session, or the loss of a connection.

        Nothing before `accepted`: until then no run is ours.
        """
        attempt = self._attempt
        if attempt is None:
            return []
        if isinstance(item, Disconnected):
            return self._lost(attempt, item)
        if item.session_key != self.session_key:
            return []
        if isinstance(item, AgentEvent):
            forward = item.run_id == attempt.follow and item.stream in TOOL_STREAMS
            return [Tool(item.payload)] if forward else []
        return self._chat(attempt, item)

    def _lost(self, attempt: _Attempt, lost: Disconnected) -> list[Step]:
        if lost.generation != attempt.generation:
            return []  # a connection closed before this attempt was sent
        self._reply.resync = True
        return [Resend()]

    def _chat(self, attempt: _Attempt, event: ChatEvent) -> list[Step]:
        steps: list[Step] = []
        if attempt.merged and attempt.follow is None and event.run_id != attempt.run_id:
            # Merged before any other run had spoken: the first one that does answers our input.
            attempt.follow = event.run_id
            steps += self._delta(self._reply.adopt(attempt.others.pop(event.run_id, "")))
        if event.run_id != attempt.follow:
            _track(attempt.others, event)
            return steps
        return steps + self._followed(attempt, event)

    def _followed(self, attempt: _Attempt, event: ChatEvent) -> list[Step]:
        if event.state == "status":
            return [Status(event.phase)] if event.phase is not None else []
        if event.state == "delta":
            return self._delta(self._reply.apply(event))
        if not event.terminal:
            return []
        if not attempt.merged and event.state == "final" and not event.has_message and not self._reply.text:
            return self._merge(attempt)
        return [Finished(self._result(attempt, event))]

    def _merge(self, attempt: _Attempt) -> list[Step]:
        # The gateway steered our input into another run of the session, whose reply answers it: follow
        # the newest one active, or (none yet) the next one to speak.
        attempt.merged = True
        attempt.follow = next(reversed(attempt.others), None)
        logger.info("input merged into another run", run_id=attempt.run_id, into=attempt.follow)
        if attempt.follow is None:
            return []
        return self._delta(self._reply.adopt(attempt.others.pop(attempt.follow)))

    def _result(self, attempt: _Attempt, event: ChatEvent) -> RunResult:
        text = event.snapshot if event.snapshot is not None else self._reply.text
        if event.state == "error":
            reason = event.error_message if event.error_message is not None else "the model run failed"
            return RunResult(
                "error",
                text,
                attempt.run_id,
                error_message=reason,
                error_kind=event.error_kind,
                stop_reason=event.stop_reason,
            )
        if event.state == "final":
            state: RunState = "merged" if attempt.merged else "final"
            return RunResult(state, text, attempt.run_id, stop_reason=event.stop_reason)
        return RunResult("aborted", text, attempt.run_id, stop_reason=event.stop_reason)

    @staticmethod
    def _delta(delta: Delta | None) -> list[Step]:
        return [delta] if delta is not None else []


def _track(others: dict[str, str], event: ChatEvent) -> None:
    """Keep the text of another active run of the session, in case our input gets merged into it."""
    if event.terminal:
        others.pop(event.run_id, None)
    elif event.state == "delta":
        text = event.delta_text if event.replace else others.get(event.run_id, "") + event.delta_text
        # The cumulative snapshot also covers deltas sent before we started listening.
        others[event.run_id] = event.snapshot if event.snapshot is not None else text
    else:
        others.setdefault(event.run_id, "")


def reply_from_history(messages: list[dict[str, Any]], idempotency_key: str) -> str | None:
    """The reply of a run that ended while the client was away, from the session's transcript.

    The last assistant text after the user message sent with this key (else the last assistant text).
    """
    start = max(
        (index + 1 for index, row in enumerate(messages) if _sent_with(row, idempotency_key)), default=0
    )
    texts = [
        text for row in messages[start:] if row.get("role") == "assistant" and (text := message_text(row))
    ]
    return texts[-1] if texts else None


def _sent_with(row: dict[str, Any], idempotency_key: str) -> bool:
    meta = row.get("__openclaw")
    # Observed: the user row's key is "<idempotencyKey>:user".
    row_key = meta.get("idempotencyKey") if isinstance(meta, dict) else None
    return isinstance(row_key, str) and (
        row_key == idempotency_key or row_key.startswith(idempotency_key + ":")
    )
