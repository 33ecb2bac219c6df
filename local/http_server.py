"""How every stand-in is served: uvicorn on a loopback socket, answering every WebSocket handshake it refuses.

uvicorn's sans-I/O WebSocket protocol leaves two holes that matter to a stand-in of API Gateway:

- when the websockets library cannot parse an upgrade request (a request line over its 8 KiB, headers
  too large), it prepares its answer (414, 431) but uvicorn never writes it: the client waits forever;
- when the app refuses an upgrade with an HTTP response (a `$connect` that said no), uvicorn does not
  count the handshake as done and logs the refusal as an application error.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

MAX_WEBSOCKET_MESSAGE_BYTES = 2 * 1024 * 1024
"""Far above API Gateway's 128 KiB per message, which the WebSocket API stand-in enforces itself."""


class AnsweringWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, which answers and closes every handshake it does not complete."""

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to the handshake; write out and close at once if websockets refused it."""
        super().data_received(data)
        if self.conn.handshake_exc is not None and not self.handshake_initiated and not self.close_sent:
            self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    async def send(self, message: Any) -> None:
        """Send an ASGI message; a finished denial response completes the handshake (as a refusal)."""
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


def server_config(app: Any) -> uvicorn.Config:
    """uvicorn's settings for a stand-in: no logging config or access log of its own, no lifespan, no
    pings (API Gateway sends none), and the WebSocket protocol above."""
    return uvicorn.Config(
        app,
        ws=AnsweringWebSocketProtocol,
        log_config=None,
        access_log=False,
        lifespan="off",
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        ws_ping_interval=None,
        timeout_graceful_shutdown=5,
    )
