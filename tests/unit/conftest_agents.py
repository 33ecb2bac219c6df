"""Helpers for lifecycle tests (watchdog, task events): users with queued messages, agents in each state."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from local.telegram import TelegramSimulator
from serverless_openclaw import routing
from serverless_openclaw.aws.clients import client as aws_client
from serverless_openclaw.connections import Connection
from serverless_openclaw.control_plane import ControlPlane, TelegramOnDemand
from serverless_openclaw.lifecycle import Status
from serverless_openclaw.messages import IncomingMessage
from serverless_openclaw.telegram import TelegramClient
from tests.conftest import load_event
from tests.local.servers import serve

USER = "4c8d2e1a-7b3f-4e9a-a1d2-5f6e7c8b9a01"
OTHER = "b1e2c3d4-5f60-4718-9a0b-1c2d3e4f5a6b"
CLUSTER_ARN = "arn:aws:ecs:us-east-1:123456789012:cluster/test-cluster"


def client(cp: ControlPlane, connection_id: str, user: str = USER) -> None:
    """Open a browser tab for the user."""
    cp.connections.put(Connection(connection_id, user, "client", cp.clock()))


def queue(cp: ControlPlane, text: str, user: str = USER) -> str:
    """Store a user message in the Inbox (as ws_message does) without touching the agent; its id."""
    accepted = cp.intake.accept(
        IncomingMessage(user_id=user, text=text, channel="web", conversation_id="conv-1"), cp.clock()
    )
    cp.task_state.touch_activity(user, cp.clock())
    return accepted.message_id


def starting(cp: ControlPlane, user: str = USER) -> str:
    """Start the user's agent (Idle → Starting, RunTask); the task ARN."""
    outcome = routing.start_agent(cp, cp.task_state.touch_activity(user, cp.clock()), reason="test")
    assert outcome.task_arn, outcome
    return outcome.task_arn


def running(cp: ControlPlane, user: str = USER, *, busy: bool = False) -> str:
    """An agent that came up: Running, attempts reset, heartbeating now; the task ARN."""
    task_arn = starting(cp, user)
    state = cp.task_state.get(user)
    assert cp.task_state.transition(state, Status.RUNNING, cp.clock(), set_={"startAttempts": 0})
    assert cp.task_state.heartbeat(user, task_arn, busy, cp.clock())
    return task_arn


def stopped_event(
    name: str, task_arn: str, user: str | None = USER, *, cluster_arn: str = CLUSTER_ARN
) -> dict[str, Any]:
    """A sample STOPPED event from events/, pointed at our cluster, a task and a user (None: no USER_ID)."""
    event = copy.deepcopy(load_event(name))
    detail: dict[str, Any] = event["detail"]  # type: ignore[assignment]
    detail["clusterArn"] = cluster_arn
    detail["taskArn"] = task_arn
    event["resources"] = [task_arn]
    for container in detail["containers"]:
        container["taskArn"] = task_arn
    overrides = detail["overrides"]["containerOverrides"][0]
    overrides["environment"] = [
        pair for pair in overrides["environment"] if pair["name"] != "USER_ID" or user is not None
    ]
    for pair in overrides["environment"]:
        if pair["name"] == "USER_ID":
            pair["value"] = user
    return event


@contextlib.contextmanager
def telegram_waiting_note(
    cp: ControlPlane, token: str, chat_id: int = 42
) -> Iterator[tuple[TelegramSimulator, int]]:
    """A stand-in Telegram the control plane reaches (its bot token in SSM), with one "waking up" note already
    sent to `chat_id`; the simulator and the note's message id."""
    sim = TelegramSimulator(token=token)
    with serve(sim.app) as server:
        aws_client("ssm").put_parameter(
            Name="/test/secrets/telegram-bot-token", Value=token, Type="SecureString"
        )
        note = TelegramClient(token, api_base=server.url).send_message(chat_id, "⏳ Waking up your agent…")
        cp.telegram = TelegramOnDemand(replace(cp.cfg.telegram, api_base=server.url))
        yield sim, note
