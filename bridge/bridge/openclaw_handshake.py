"""Opening one connection to the OpenClaw gateway: the protocol v4 handshake (docs/openclaw.md, Protocol).

The gateway opens with a `connect.challenge` event; the client answers with a `connect` request as a
backend operator holding the gateway's token, and the gateway accepts with `hello-ok` or refuses with an
error (and closes). While it starts up it refuses with a retryable UNAVAILABLE and close code 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bridge.openclaw_frames import Challenge, GatewayError, Hello, Response, parse_frame
from serverless_openclaw.observability import logger

PROTOCOL_VERSION = 4
CLIENT_ID = "gateway-client"
CLIENT_MODE = "backend"
DISPLAY_NAME = "serverless-openclaw bridge"
SCOPES = ("operator.read", "operator.write")
# The gateway's frames may reach policy.maxPayload (25 MiB); leave headroom for transcripts in chat.history.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# The gateway's own pre-auth budget is 15 s; a handshake slower than that will not succeed anyway.
HANDSHAKE_TIMEOUT = 15.0
# Close codes after which a new connection may succeed: restart, "try again later", going away, drops.
RETRYABLE_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013})


class Retry(Exception):
    """A transient failure to connect: try again, after `delay` seconds if the gateway said so."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


async def handshake(
    url: str, token: str, client_version: str, timeout: float
) -> tuple[ClientConnection, Hello]:
    """One connection and handshake; raises Retry for a transient failure, GatewayError for a fatal one."""
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            ws = await _open(url)
            await _expect_challenge(ws)
            request_id = await _send_connect(ws, token, client_version)
            response = await _await_response(ws, request_id)
    except (OSError, InvalidHandshake, ConnectionClosed, ValueError, InvalidURI, GatewayError) as exc:
        await _discard(ws)
        raise _failure(exc) from None
    return ws, await _check_hello(ws, response)


async def _open(url: str) -> ClientConnection:
    # No Origin and no extra headers: any Origin makes the gateway treat us as a browser.
    # proxy=None: the gateway is on loopback and must never be reached through a proxy.
    return await connect(url, max_size=MAX_FRAME_BYTES, compression=None, proxy=None, open_timeout=None)


async def _expect_challenge(ws: ClientConnection) -> None:
    if not isinstance(parse_frame(await ws.recv()), Challenge):
        raise GatewayError("PROTOCOL_ERROR", "the gateway did not open with connect.challenge")


async def _send_connect(ws: ClientConnection, token: str, client_version: str) -> str:
    """Send the `connect` request; return its id."""
    request_id = uuid.uuid4().hex
    await ws.send(json.dumps(_connect_request(request_id, token, client_version)))
    return request_id


def _connect_request(request_id: str, token: str, client_version: str) -> dict[str, Any]:
    return {
        "type": "req",
        "id": request_id,
        "method": "connect",
        "params": {
            "minProtocol": PROTOCOL_VERSION,
            "maxProtocol": PROTOCOL_VERSION,
            "client": {
                "id": CLIENT_ID,
                "version": client_version,
                "platform": sys.platform,
                "mode": CLIENT_MODE,
                "displayName": DISPLAY_NAME,
            },
            "role": "operator",
            "scopes": list(SCOPES),
            "caps": ["tool-events"],
            "auth": {"token": token},
        },
    }


async def _await_response(ws: ClientConnection, request_id: str) -> Response:
    """The response to our request; any event sent before it is of no interest yet."""
    while True:
        frame = parse_frame(await ws.recv())
        if isinstance(frame, Response) and frame.id == request_id:
            return frame


async def _check_hello(ws: ClientConnection, response: Response) -> Hello:
    """The gateway's `hello-ok`; closes the connection and raises when it refused us."""
    if response.error is not None:
        await _discard(ws)
        if response.error.retryable:
            raise Retry(response.error.code, response.error.retry_after)
        logger.error("gateway refused the connection", code=response.error.code)
        raise response.error
    hello = Hello.from_payload(response.payload)
    if hello is None or hello.protocol != PROTOCOL_VERSION:
        await _discard(ws)
        raise GatewayError("PROTOCOL_MISMATCH", "the gateway did not answer hello-ok for protocol 4")
    logger.info("gateway connected", server_version=hello.server_version, protocol=PROTOCOL_VERSION)
    return hello


def _failure(exc: Exception) -> Retry | GatewayError:
    """What a failed handshake means: Retry when a later attempt may succeed, else the GatewayError."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError):  # before OSError, of which it is a subclass
        return Retry("handshake timed out")
    if isinstance(exc, OSError | InvalidHandshake):
        return Retry(type(exc).__name__)
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        if code in RETRYABLE_CLOSE_CODES:
            return Retry(f"closed with {code}")
        return GatewayError("HANDSHAKE_REJECTED", f"the gateway closed the connection with {code}")
    if isinstance(exc, InvalidURI):
        return GatewayError("INVALID_URL", "the gateway URL is not a ws:// URL")
    # What is left is the ValueError of a frame that did not parse.
    return GatewayError("PROTOCOL_ERROR", "the gateway sent a frame that is not JSON")


async def _discard(ws: ClientConnection | None) -> None:
    if ws is not None:
        with contextlib.suppress(Exception):
            await ws.close()
