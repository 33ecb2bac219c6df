"""Posting frames to WebSocket connections through the API Gateway management API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.observability import logger
from serverless_openclaw.store.connections import ConnectionStore


class ConnectionPusher:
    """Fan-out to a user's client connections; a gone connection is forgotten on the spot."""

    def __init__(self, endpoint: str, connections: ConnectionStore) -> None:
        self.endpoint = endpoint
        self.connections = connections

    def send(self, connection_id: str, payload: Mapping[str, Any]) -> bool:
        """Post one frame; False (and the row deleted) when the connection is gone."""
        data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            client("apigatewaymanagementapi", self.endpoint).post_to_connection(
                ConnectionId=connection_id, Data=data
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "GoneException":
                self.connections.delete(connection_id)
                logger.info("connection gone, removed", connection_id=connection_id)
            else:
                logger.warning("post to connection failed", connection_id=connection_id, code=code)
            return False
        except BotoCoreError as exc:
            logger.warning("post to connection failed", connection_id=connection_id, error=type(exc).__name__)
            return False
        return True

    def to_user(self, user_id: str, payload: Mapping[str, Any]) -> int:
        """Post a frame to every open client connection of the user; returns how many got it."""
        return sum(self.send(conn.connection_id, payload) for conn in self.connections.for_user(user_id))
