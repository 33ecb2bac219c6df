"""Posting frames to WebSocket connections through the API Gateway management API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.observability import logger
from serverless_openclaw.store.connections import ConnectionStore


class ConnectionPusher:
    """Fan-out to a user's client connections; a gone connection is forgotten on the spot."""

    def __init__(
        self,
        endpoint: str,
        connections: ConnectionStore,
        *,
        lookup_ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoint = endpoint
        self.connections = connections
        # A streamed reply pushes a chunk every ~150 ms: for chunks, the user's connection list is
        # looked up at most once per lookup_ttl instead of once per chunk. Every other frame (the
        # reply's end with its full text, errors, status) looks it up afresh, so a tab opened a moment
        # ago may miss a few chunks but never a whole reply.
        self.lookup_ttl = lookup_ttl
        self.clock = clock
        self._recent: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

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
                with self._lock:
                    for user_id, (_, ids) in list(self._recent.items()):
                        if connection_id in ids:
                            ids.remove(connection_id)
                            if not ids:
                                # Nobody left in the cached list: look again next time (a new tab?).
                                del self._recent[user_id]
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
        reuse = payload.get("type") == "stream_chunk"
        return sum(self.send(connection_id, payload) for connection_id in self._client_ids(user_id, reuse))

    def prefetch(self, user_id: str) -> None:
        """Look the user's client connections up now (a reply is about to stream to them)."""
        self._client_ids(user_id, reuse=False)

    def _client_ids(self, user_id: str, reuse: bool) -> list[str]:
        now = self.clock()
        with self._lock:
            cached = self._recent.get(user_id)
            if reuse and cached is not None and now - cached[0] < self.lookup_ttl:
                return list(cached[1])
        ids = [conn.connection_id for conn in self.connections.for_user(user_id)]
        with self._lock:
            self._recent[user_id] = (now, ids)
        return list(ids)
