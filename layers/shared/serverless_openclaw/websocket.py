"""Frames arriving on the WebSocket API's `$default` route, from browsers (clients) and bridges (agents).

Every frame gets exactly one reply frame, returned to API Gateway as the route response; bad input is
answered with an `error` frame and writes nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from serverless_openclaw import protocol, routing
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane
from serverless_openclaw.messages import IncomingMessage, OutOfOrder
from serverless_openclaw.observability import count, logger


class ConnectionCache:
    """Who is behind a connection id; identities never change, so warm invocations skip a read."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Connection] = OrderedDict()

    def lookup(self, cp: ControlPlane, connection_id: str) -> Connection | None:
        """The connection's row, from memory when seen before."""
        hit = self._entries.get(connection_id)
        if hit is not None:
            self._entries.move_to_end(connection_id)
            return hit
        found = cp.connections.get(connection_id)
        if found is not None:
            self._entries[connection_id] = found
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return found


def handle_frame(
    cp: ControlPlane, cache: ConnectionCache, connection_id: str, body: str | None
) -> dict[str, Any]:
    """Validate one frame, act on it and return the reply frame."""
    try:
        frame = protocol.parse_frame(body)
    except protocol.ProtocolError as exc:
        count("FrameRejected")
        logger.info("frame rejected", connection_id=connection_id, code=exc.code)
        return protocol.error(exc.code, exc.message)
    connection = cache.lookup(cp, connection_id)
    if connection is None:
        logger.warning("frame from unknown connection", connection_id=connection_id)
        return protocol.error("unauthorized", "This connection is not signed in; reconnect.")
    if connection.kind == "agent":
        return _agent_frame(cp, connection, frame)
    return _client_frame(cp, connection, frame)


def _agent_frame(cp: ControlPlane, connection: Connection, frame: protocol.Frame) -> dict[str, Any]:
    if not isinstance(frame, protocol.Heartbeat) or not connection.task_arn:
        return protocol.error("unknown_action", "Agent connections only send heartbeats.")
    accepted = cp.task_state.heartbeat(connection.user_id, connection.task_arn, frame.busy, cp.clock())
    if not accepted:
        # The row no longer references this task: tell the bridge so it can wind down.
        logger.warning(
            "heartbeat from a superseded task", user_id=connection.user_id, task_arn=connection.task_arn
        )
    return {"type": "heartbeat", "accepted": accepted}


def _client_frame(cp: ControlPlane, connection: Connection, frame: protocol.Frame) -> dict[str, Any]:
    user_id = connection.user_id
    if isinstance(frame, protocol.Ping):
        return protocol.pong()
    if isinstance(frame, protocol.GetStatus):
        return routing.status_frame(cp, user_id)
    if isinstance(frame, protocol.Stop):
        aborted = routing.abort_reply(cp, user_id, frame.conversation_id)
        return {"type": "ack", "action": "stop", "aborted": aborted}
    if isinstance(frame, protocol.SendMessage):
        return _send_message(cp, user_id, frame)
    if isinstance(frame, protocol.Warm):
        return _warm(cp, user_id)
    return protocol.error("unknown_action", "Heartbeats are for agent connections.")


def _send_message(cp: ControlPlane, user_id: str, frame: protocol.SendMessage) -> dict[str, Any]:
    message = IncomingMessage(
        user_id=user_id,
        text=frame.message,
        channel="web",
        conversation_id=frame.conversation_id,
        idempotency_key=_web_key(user_id, frame.client_message_id),
        client_message_id=frame.client_message_id,
        follows=_web_key(user_id, frame.after) if frame.after else None,
    )
    try:
        accepted, status = routing.accept_message(cp, message)
    except OutOfOrder:
        # Its predecessor's frame is still on its way (or was lost): the tab sends this one again once
        # that one is acknowledged, so the two are stored, and answered, in the order they were typed.
        count("MessageOutOfOrder")
        return protocol.error(
            "out_of_order",
            "The message sent before this one is not stored yet; send this one after it.",
            clientMessageId=frame.client_message_id,
            after=frame.after,
            retryable=True,
        )
    except Exception:
        logger.exception("message could not be stored", user_id=user_id)
        return protocol.error(
            "not_stored", "Your message could not be stored. Please send it again.", retryable=True
        )
    reply = protocol.ack(
        frame.client_message_id, accepted.message_id, accepted.conversation_id, duplicate=accepted.duplicate
    )
    reply["status"] = status
    return reply


def _warm(cp: ControlPlane, user_id: str) -> dict[str, Any]:
    """Wake on intent; the reply is the status the tab should show and what the frame did."""
    try:
        outcome = routing.wake_on_intent(cp, user_id)
    except Exception:
        # Only a courtesy: the first message starts the agent all the same.
        logger.exception("warm failed", user_id=user_id)
        return protocol.error("warm_failed", "The agent could not be woken now; your next message will.")
    logger.info("warm", user_id=user_id, wake=outcome.wake, status=outcome.status["status"])
    return protocol.warmed(outcome.status, outcome.wake, outcome.error)


def _web_key(user_id: str, client_message_id: str) -> str:
    """The Idempotency row of a web message."""
    return f"web#{user_id}#{client_message_id}"
