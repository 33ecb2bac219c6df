"""API Gateway's WebSocket API stand-in, with its `@connections` management API.

It reads its routes from the template and hands the functions the events API Gateway sends: `$connect`
(query string, headers; a non-2xx answer refuses the upgrade with that status), `$default` for every
frame (a route response goes back to the caller), `$disconnect` when either side closes.
`POST/GET/DELETE /{stage}/@connections/{id}` is what boto3's `apigatewaymanagementapi` client calls; its
SigV4 signature is checked against the credentials the stack hands out (local/signature.py), as AWS
checks it: a call AWS would refuse with 403 is refused here with the same error type and message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from local.apigateway import new_id, request_time
from local.functions import FunctionError, FunctionHost
from local.resolve import REGION, URL_SUFFIX, Resolver
from local.signature import MISSING_TOKEN, SignatureRefused, SigV4Verifier, received_request
from local.template import TemplateError, resources_of_type

log = logging.getLogger("local.websocket_api")

STAGE = "prod"
MAX_FRAME_BYTES = 128 * 1024
"""API Gateway's WebSocket message limit (frames of up to 32 KiB are assembled up to 128 KiB)."""

MAX_POST_BYTES = 128 * 1024
MAX_URL_CHARS = 4096
"""API Gateway's limit on the length of a WebSocket API's URL (a longer upgrade is refused)."""


def route_functions(template: dict[str, Any]) -> dict[str, str]:
    """WebSocket route key → function logical id, following Route → Integration → function ARN."""
    integrations: dict[str, str] = {}
    for logical_id, resource in resources_of_type(template, "AWS::ApiGatewayV2::Integration").items():
        uri = (resource.get("Properties") or {}).get("IntegrationUri")
        text = json.dumps(uri)
        found = re.search(r"\$\{(\w+)\.Arn\}", text) or re.search(r'"Fn::GetAtt": \["(\w+)", "Arn"\]', text)
        if found:
            integrations[logical_id] = found.group(1)
    routes: dict[str, str] = {}
    for logical_id, resource in resources_of_type(template, "AWS::ApiGatewayV2::Route").items():
        properties = resource.get("Properties") or {}
        target = json.dumps(properties.get("Target"))
        integration = re.search(r"integrations/\$\{(\w+)\}", target)
        if not integration or integration.group(1) not in integrations:
            raise TemplateError(f"route {logical_id} has no Lambda integration the local stack can follow")
        routes[str(properties.get("RouteKey"))] = integrations[integration.group(1)]
    return routes


@dataclass
class ClientConnection:
    """One open WebSocket connection."""

    connection_id: str
    websocket: WebSocket
    source_ip: str
    user_agent: str
    connected_at: float
    last_active_at: float
    closing: bool = False
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class WebSocketApi:
    """The WebSocket API and its management API on one loopback server, like `{api}.execute-api…`."""

    def __init__(
        self,
        resolver: Resolver,
        functions: FunctionHost,
        api_logical_id: str,
        *,
        credentials: Mapping[str, str],
    ) -> None:
        self.resolver = resolver
        self.functions = functions
        self.verifier = SigV4Verifier(credentials, "execute-api")
        self.api_id = resolver.physical_id(api_logical_id)
        self.routes = route_functions(resolver.template)
        for required in ("$connect", "$default", "$disconnect"):
            if required not in self.routes:
                raise TemplateError(f"the WebSocket API has no {required} route")
        self.connections: dict[str, ClientConnection] = {}
        self.host = f"{self.api_id}.execute-api.{REGION}.{URL_SUFFIX}"
        self.app = Starlette(
            routes=[
                WebSocketRoute(f"/{STAGE}", self._serve),
                Route(
                    f"/{STAGE}/@connections/{{connection_id:path}}",
                    self._manage,
                    methods=["POST", "GET", "DELETE"],
                ),
            ]
        )

    # ------------------------------------------------------------------------------------ events

    def _base_context(self, connection: ClientConnection, route_key: str, event_type: str) -> dict[str, Any]:
        now = time.time()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": new_id(),
            "requestTime": request_time(now),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": int(connection.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"userAgent": connection.user_agent, "sourceIp": connection.source_ip},
            "requestId": new_id(),
            "domainName": self.host,
            "connectionId": connection.connection_id,
            "apiId": self.api_id,
        }

    def _connect_event(self, connection: ClientConnection, websocket: WebSocket) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        for raw_name, raw_value in websocket.headers.raw:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            if name.lower() == "host":
                value = self.host
            headers[name] = value  # API Gateway keeps the last value in `headers`
            multi_headers.setdefault(name, []).append(value)
        headers.update({"X-Forwarded-For": connection.source_ip, "X-Forwarded-Proto": "https"})
        multi_headers.update({"X-Forwarded-For": [connection.source_ip], "X-Forwarded-Proto": ["https"]})
        pairs = parse_qsl(websocket.url.query, keep_blank_values=True)
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for key, value in pairs:
            query[key] = value
            multi_query.setdefault(key, []).append(value)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "requestContext": self._base_context(connection, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = multi_query
        return event

    # ------------------------------------------------------------------------------------ serving

    async def _serve(self, websocket: WebSocket) -> None:
        client = websocket.client
        now = time.time()
        connection = ClientConnection(
            connection_id=new_id(),
            websocket=websocket,
            source_ip=client.host if client else "127.0.0.1",
            user_agent=websocket.headers.get("user-agent", ""),
            connected_at=now,
            last_active_at=now,
        )
        if not await self._admit(connection, websocket):
            return
        self.connections[connection.connection_id] = connection
        close_code, reason = 1006, "Going away"
        pending: set[asyncio.Task[None]] = set()
        try:
            close_code, reason = await self._receive(connection, websocket, pending)
        except WebSocketDisconnect as exc:
            close_code = exc.code
            reason = f"Client-side close frame status code '{exc.code}'"
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            self.connections.pop(connection.connection_id, None)
            if connection.closing:
                reason = "Connection closed by the management API"
            await self._disconnect(connection, close_code, reason)

    async def _admit(self, connection: ClientConnection, websocket: WebSocket) -> bool:
        """Answer the upgrade as API Gateway would: 414 for an overlong URL, $connect's refusal, or accept."""
        if len(self._url(websocket)) > MAX_URL_CHARS:
            log.info("refused an upgrade: its URL is over API Gateway's %d characters", MAX_URL_CHARS)
            await websocket.send_denial_response(JSONResponse({"message": "Request-URI Too Long"}, 414))
            return False
        status = await self._connect(connection, websocket)
        if status is not None:
            # A refusal by $connect is ordinary traffic (an expired token): the function logged why.
            log.info("$connect refused connection %s with HTTP %d", connection.connection_id, status)
            said = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
            await websocket.send_denial_response(JSONResponse({"message": said}, status_code=status))
            return False
        await websocket.accept()
        return True

    async def _receive(
        self, connection: ClientConnection, websocket: WebSocket, pending: set[asyncio.Task[None]]
    ) -> tuple[int, str]:
        """Hand each frame to $default concurrently (as API Gateway does) until the connection ends; the
        close code and reason $disconnect is told."""
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                close_code = int(message.get("code") or 1005)
                return close_code, f"Client-side close frame status code '{close_code}'"
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > MAX_FRAME_BYTES:
                await websocket.close(code=1009, reason="Message too big")
                return 1009, "Message too big"
            connection.last_active_at = time.time()
            task = asyncio.create_task(self._message(connection, text, data))
            pending.add(task)
            task.add_done_callback(pending.discard)

    def _url(self, websocket: WebSocket) -> str:
        """The URL the client would have used on AWS: wss://{api}.execute-api…/{stage}?{query}."""
        path = (websocket.scope.get("raw_path") or websocket.url.path.encode()).decode("latin-1")
        query = websocket.scope.get("query_string", b"").decode("latin-1")
        return f"wss://{self.host}{path}" + (f"?{query}" if query else "")

    async def _connect(self, connection: ClientConnection, websocket: WebSocket) -> int | None:
        """None when the connection is allowed, else the HTTP status that refuses it."""
        try:
            result = await self.functions.ainvoke(
                self.routes["$connect"], self._connect_event(connection, websocket)
            )
        except FunctionError as exc:
            log.error("$connect failed: %s", exc.reason)
            return 500
        status = result.get("statusCode", 200) if isinstance(result, dict) else 200
        try:
            code = int(status)
        except (TypeError, ValueError):
            return 500
        return None if 200 <= code < 300 else code

    async def _message(self, connection: ClientConnection, text: str | None, data: bytes | None) -> None:
        context = self._base_context(connection, "$default", "MESSAGE")
        context["messageId"] = new_id()
        event: dict[str, Any] = {
            "requestContext": context,
            "body": text if text is not None else base64.b64encode(data or b"").decode(),
            "isBase64Encoded": text is None,
        }
        try:
            result = await self.functions.ainvoke(self.routes["$default"], event)
        except FunctionError:
            await self._send(
                connection,
                json.dumps(
                    {
                        "message": "Internal server error",
                        "connectionId": connection.connection_id,
                        "requestId": context["requestId"],
                    }
                ),
            )
            return
        # A two-way route: the integration's body is sent back to the caller.
        if isinstance(result, dict) and isinstance(result.get("body"), str) and result["body"]:
            await self._send(connection, result["body"])

    async def _disconnect(self, connection: ClientConnection, code: int, reason: str) -> None:
        context = self._base_context(connection, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = reason
        event = {
            "headers": {"Host": self.host},
            "multiValueHeaders": {"Host": [self.host]},
            "requestContext": context,
            "isBase64Encoded": False,
        }
        try:
            await self.functions.ainvoke(self.routes["$disconnect"], event)
        except FunctionError as exc:
            log.error("$disconnect failed: %s", exc.reason)

    async def _send(self, connection: ClientConnection, text: str) -> bool:
        async with connection.send_lock:
            if connection.websocket.application_state != WebSocketState.CONNECTED:
                return False
            try:
                await connection.websocket.send_text(text)
            except (RuntimeError, OSError, WebSocketDisconnect):
                return False
        return True

    # ------------------------------------------------------------------------------------ @connections

    async def _manage(self, request: Request) -> Response:
        arrived = await received_request(request)
        body = arrived.body
        try:
            self.verifier.verify(arrived)
        except SignatureRefused as refused:
            # This API's model names ForbiddenException for a call without any signature.
            error_type = "ForbiddenException" if refused.code == MISSING_TOKEN else refused.code
            return _error(403, error_type, refused.message)
        connection = self.connections.get(request.path_params["connection_id"])
        if connection is None or connection.closing:
            return _error(410, "GoneException", None)
        if request.method == "GET":
            # The wire names are camelCase (boto3 maps them to ConnectedAt, Identity.SourceIp, ...).
            return JSONResponse(
                {
                    "connectedAt": _iso(connection.connected_at),
                    "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
                    "lastActiveAt": _iso(connection.last_active_at),
                }
            )
        if request.method == "DELETE":
            connection.closing = True
            async with connection.send_lock:
                if connection.websocket.application_state == WebSocketState.CONNECTED:
                    with contextlib.suppress(RuntimeError, OSError):
                        await connection.websocket.close(code=1000)
            return Response(status_code=204)
        if len(body) > MAX_POST_BYTES:
            return _error(413, "PayloadTooLargeException", "Message too long")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "BadRequestException", "Data must be UTF-8 text on this API")
        if not await self._send(connection, text):
            return _error(410, "GoneException", None)
        connection.last_active_at = time.time()
        return Response(status_code=200)

    async def close_all(self) -> None:
        """Close every connection (going away), as when a stage is deleted."""
        for connection in list(self.connections.values()):
            connection.closing = True
            async with connection.send_lock:
                if connection.websocket.application_state == WebSocketState.CONNECTED:
                    with contextlib.suppress(RuntimeError, OSError):
                        await connection.websocket.close(code=1001)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _error(status: int, error_type: str, message: str | None) -> Response:
    return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": error_type})
