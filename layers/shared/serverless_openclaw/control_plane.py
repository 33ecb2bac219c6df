"""The collaborators every control-plane operation needs, built once per process (fakes in tests)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from serverless_openclaw.aws.ecs import EcsLauncher
from serverless_openclaw.aws.pusher import ConnectionPusher
from serverless_openclaw.config import ControlPlaneConfig, TelegramConfig
from serverless_openclaw.lifecycle import Capacity
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.inbox import InboxStore
from serverless_openclaw.store.intake import IntakeStore
from serverless_openclaw.store.settings import SettingsStore
from serverless_openclaw.store.task_state import TaskStateStore
from serverless_openclaw.tasks import Launched
from serverless_openclaw.wake_schedules import Wanted

if TYPE_CHECKING:
    from serverless_openclaw.store.telegram_links import TelegramLinkStore


class Pusher(Protocol):
    """Delivers frames to WebSocket connections."""

    def send(self, connection_id: str, payload: Mapping[str, Any]) -> bool:
        """Post to one connection; False when it is gone."""
        ...

    def to_user(self, user_id: str, payload: Mapping[str, Any]) -> int:
        """Post to every client connection of a user."""
        ...


class Notifier(Protocol):
    """Tells users on Telegram what their web tabs are told (a message that will not be answered)."""

    def notify(self, targets: Iterable[tuple[int, int | None]], text: str) -> int:
        """Edit each (chat, waiting message) into `text`, or send it; how many were told."""
        ...


class TelegramOnDemand:
    """The Telegram notifier, imported on the first notice: most invocations never send one, and the
    Bot API client (urllib, Markdown patterns) would add about 5 ms to every cold start. Its configuration
    is read at start-up with the rest, so a missing variable fails there and not at the first notice."""

    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        self._notifier: Notifier | None = None

    def notify(self, targets: Iterable[tuple[int, int | None]], text: str) -> int:
        """Edit each (chat, waiting message) into `text`, or send it; how many were told."""
        if self._notifier is None:
            from serverless_openclaw.telegram import TelegramNotifier

            self._notifier = TelegramNotifier(self.config)
        return self._notifier.notify(targets, text)


class ScheduleWriter(Protocol):
    """Keeps a user's wake schedules for one reason exactly as wanted (aws/scheduler.py)."""

    def replace(self, user_id: str, reason: str, wanted: Sequence[Wanted]) -> list[str]:
        """Create, update and delete until the user's schedules are `wanted`; their names."""
        ...


class Launcher(Protocol):
    """Starts and stops agent tasks."""

    def launch(self, user_id: str, attempt_token: str, prefer: Capacity = Capacity.SPOT) -> Launched:
        """Start a task (raises StartError)."""
        ...

    def stop(self, task_arn: str, reason: str) -> bool:
        """Stop a task; False if it was already gone."""
        ...

    def running_tasks(self) -> list[str]:
        """ARNs of our family's live tasks."""
        ...

    def describe(self, task_arns: list[str]) -> Sequence[Mapping[str, Any]]:
        """ECS's view of tasks."""
        ...


@dataclass
class ControlPlane:
    """Stores, launcher, pusher, configuration and clock; domain modules reach every adapter through it."""

    cfg: ControlPlaneConfig
    task_state: TaskStateStore
    intake: IntakeStore
    inbox: InboxStore
    connections: ConnectionStore
    conversations: ConversationStore
    settings: SettingsStore
    pusher: Pusher
    launcher: Launcher
    clock: Callable[[], float] = field(default=time.time)
    telegram: Notifier | None = None
    schedules: ScheduleWriter | None = None
    """Only the HTTP API writes schedules (warm windows); other functions have none."""

    @functools.cached_property
    def telegram_links(self) -> TelegramLinkStore:
        """Telegram links, link codes and the bot's memory, in the Settings table.

        Built on first use: only the webhook and `/api/telegram` need it, and its import (the link rules
        and their types) would otherwise be paid on every function's cold start.
        """
        from serverless_openclaw.store.telegram_links import TelegramLinkStore

        return TelegramLinkStore(self.cfg.tables.settings)

    @classmethod
    def from_config(cls, cfg: ControlPlaneConfig, schedules: ScheduleWriter | None = None) -> ControlPlane:
        """The production wiring: DynamoDB stores, ECS launcher, API Gateway pusher (and the schedule
        writer, where the function has one)."""
        connections = ConnectionStore(cfg.tables.connections)
        return cls(
            cfg=cfg,
            task_state=TaskStateStore(cfg.tables.task_state),
            intake=IntakeStore(cfg.tables),
            inbox=InboxStore(cfg.tables.inbox),
            connections=connections,
            conversations=ConversationStore(cfg.tables.conversations),
            settings=SettingsStore(cfg.tables.settings),
            pusher=ConnectionPusher(cfg.websocket_endpoint, connections),
            launcher=EcsLauncher(cfg.launch),
            telegram=TelegramOnDemand(cfg.telegram),
            schedules=schedules,
        )
