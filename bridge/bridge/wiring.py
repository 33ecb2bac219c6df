"""The production wiring of the bridge: DynamoDB, S3, CloudWatch, SSM, the task metadata endpoint, the real
OpenClaw gateway and the agent link, each reached through boto3 or its own client (`python -m bridge`)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from collections.abc import Callable

from bridge import task_metadata
from bridge.agent_link import AgentLink
from bridge.app import Bridge
from bridge.config import BridgeConfig
from bridge.delivery import WebSocketDelivery
from bridge.gateway_process import GatewayProcess
from bridge.metrics import BridgeMetrics
from bridge.openclaw_client import GatewayClient
from bridge.secrets import model_secrets
from bridge.state_sync import StateSync, default_roots
from bridge.telegram_delivery import ChannelDelivery
from serverless_openclaw import protocol
from serverless_openclaw.aws.clients import client
from serverless_openclaw.aws.pusher import ConnectionPusher
from serverless_openclaw.store.connections import ConnectionStore
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.inbox import InboxStore
from serverless_openclaw.store.settings import SettingsStore
from serverless_openclaw.store.task_state import TaskStateStore
from serverless_openclaw.telegram import BotAccess


def signal_own_process() -> None:
    """End this process the way ECS does (SIGTERM): uvicorn then runs the bridge's graceful stop."""
    os.kill(os.getpid(), signal.SIGTERM)


def production_bridge(cfg: BridgeConfig, *, on_exit: Callable[[], None] = signal_own_process) -> Bridge:
    """The production wiring: DynamoDB stores, S3 backups, CloudWatch metrics, SSM secrets, the task
    metadata endpoint, the real OpenClaw gateway and the agent link to the control plane."""
    pusher = ConnectionPusher(cfg.websocket_endpoint, ConnectionStore(cfg.tables.connections))
    return Bridge(
        cfg,
        task_state=TaskStateStore(cfg.tables.task_state),
        inbox=InboxStore(cfg.tables.inbox),
        conversations=ConversationStore(cfg.tables.conversations),
        settings=SettingsStore(cfg.tables.settings),
        delivery=ChannelDelivery(WebSocketDelivery(pusher)),
        sync=StateSync(
            client("s3"),
            cfg.data_bucket,
            cfg.user_id,
            default_roots(cfg.openclaw_home),
            on_warning=functools.partial(_warn_user, pusher, cfg.user_id),
        ),
        metrics=BridgeMetrics(client("cloudwatch"), cfg.metrics_namespace),
        find_task_arn=functools.partial(task_metadata.task_arn, cfg.metadata_uri),
        # Called in the secrets phase: the SSM client is only made then.
        model_keys=lambda provider: model_secrets(client("ssm"), cfg.secrets_prefix, provider),
        telegram_bot=(BotAccess(cfg.telegram_token_parameter, cfg.telegram_api_base).client),
        make_gateway=GatewayProcess,
        make_gateway_client=GatewayClient,
        make_link=AgentLink,
        on_exit=on_exit,
    )


def _warn_user(pusher: ConnectionPusher, user_id: str, text: str) -> None:
    """A backup warning, to the user's web tabs; not telling them is no reason to fail the backup."""
    frame = protocol.error("backup_warning", text)
    with contextlib.suppress(Exception):
        pusher.to_user(user_id, frame)
