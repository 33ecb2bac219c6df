"""API Gateway stand-ins: the WebSocket API with its `@connections` management API, and the HTTP API.

Both read their routes from the template and hand the functions the events API Gateway sends:

- WebSocket: `$connect` (query string, headers; a non-2xx answer refuses the upgrade with that status),
  `$default` for every frame (a route response goes back to the caller), `$disconnect` when either side
  closes. `POST/GET/DELETE /{stage}/@connections/{id}` is what boto3's `apigatewaymanagementapi` client
  calls; it must be SigV4-signed, as in AWS.
- HTTP: payload format 2.0 events for the routes of each `HttpApi` event; the JWT authorizer verifies the
  bearer token against the user pool's keys (RS256, issuer, audience or client_id, expiry) and answers
  401 before any function runs; CORS preflights are answered from `CorsConfiguration`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from local.functions import FunctionError, FunctionHost
from local.resolve import ACCOUNT, REGION, URL_SUFFIX, Resolver
from local.template import TemplateError, resources_of_type

log = logging.getLogger("local.apigateway")

STAGE = "prod"
MAX_FRAME_BYTES = 128 * 1024
"""API Gateway's WebSocket message limit (frames of up to 32 KiB are assembled up to 128 KiB)."""

MAX_POST_BYTES = 128 * 1024


def _new_id() -> str:
    # API Gateway's connection and request ids look like "bXbY4cVVIAMCJWg=" (11 random bytes, base64).
    return base64.b64encode(secrets.token_bytes(11)).decode()


def _request_time(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


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


# --------------------------------------------------------------------------------------------------------
# WebSocket API
# --------------------------------------------------------------------------------------------------------


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

    def __init__(self, resolver: Resolver, functions: FunctionHost, api_logical_id: str) -> None:
        self.resolver = resolver
        self.functions = functions
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
            "extendedRequestId": _new_id(),
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": STAGE,
            "connectedAt": int(connection.connected_at * 1000),
            "requestTimeEpoch": int(now * 1000),
            "identity": {"userAgent": connection.user_agent, "sourceIp": connection.source_ip},
            "requestId": _new_id(),
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
            connection_id=_new_id(),
            websocket=websocket,
            source_ip=client.host if client else "127.0.0.1",
            user_agent=websocket.headers.get("user-agent", ""),
            connected_at=now,
            last_active_at=now,
        )
        status = await self._connect(connection, websocket)
        if status is not None:
            said = {401: "Unauthorized", 403: "Forbidden"}.get(status, "Internal server error")
            await websocket.send_denial_response(JSONResponse({"message": said}, status_code=status))
            return
        await websocket.accept()
        self.connections[connection.connection_id] = connection
        close_code, reason = 1006, "Going away"
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    close_code = int(message.get("code") or 1005)
                    reason = f"Client-side close frame status code '{close_code}'"
                    break
                text, data = message.get("text"), message.get("bytes")
                size = len(text.encode()) if text is not None else len(data or b"")
                if size > MAX_FRAME_BYTES:
                    close_code, reason = 1009, "Message too big"
                    await websocket.close(code=1009, reason="Message too big")
                    break
                connection.last_active_at = time.time()
                task = asyncio.create_task(self._message(connection, text, data))
                pending.add(task)
                task.add_done_callback(pending.discard)
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
        context["messageId"] = _new_id()
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
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return _error(403, "ForbiddenException", "Missing Authentication Token")
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
        body = await request.body()
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


# --------------------------------------------------------------------------------------------------------
# HTTP API
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One route of the HTTP API (`ANY /api/{proxy+}` → HttpApiFunction)."""

    method: str
    path: str
    function: str
    authorized: bool
    pattern: re.Pattern[str]

    @property
    def route_key(self) -> str:
        """API Gateway's name for the route."""
        return f"{self.method} {self.path}"


def _path_pattern(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{segment[1:-2]}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("^/" + "/".join(parts) + "$")


class JwtAuthorizer:
    """API Gateway's JWT authorizer: issuer, audience (aud or client_id), expiry, signature."""

    def __init__(self, issuer: str, audiences: list[str], jwks_url: str) -> None:
        self.issuer = issuer
        self.audiences = audiences
        self.keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=3)

    def claims(self, header: str | None) -> dict[str, Any] | None:
        """The verified claims of the request's token, or None (→ 401)."""
        if not header:
            return None
        token = header[7:] if header[:7].lower() == "bearer " else header
        try:
            key = self.keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "iss"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        audience = claims.get("aud", claims.get("client_id"))
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in self.audiences for a in audiences):
            return None
        return claims


class HttpApi:
    """The HTTP API with its JWT authorizer and CORS, as `{api}.execute-api…` answers."""

    def __init__(
        self, resolver: Resolver, functions: FunctionHost, api_logical_id: str, jwks_url: str
    ) -> None:
        self.functions = functions
        self.api_id = resolver.physical_id(api_logical_id)
        self.host = f"{self.api_id}.execute-api.{REGION}.{URL_SUFFIX}"
        properties = resolver.resolve(resolver.template["Resources"][api_logical_id].get("Properties") or {})
        auth = properties.get("Auth") or {}
        default_authorizer = auth.get("DefaultAuthorizer")
        authorizer = (auth.get("Authorizers") or {}).get(default_authorizer or "", {})
        jwt_config = authorizer.get("JwtConfiguration") or {}
        self.authorizer = (
            JwtAuthorizer(jwt_config["issuer"], list(jwt_config.get("audience") or []), jwks_url)
            if jwt_config
            else None
        )
        cors = properties.get("CorsConfiguration") or {}
        self.allow_origins = [str(o) for o in cors.get("AllowOrigins") or []]
        self.allow_headers = [str(h) for h in cors.get("AllowHeaders") or []]
        self.allow_methods = [str(m) for m in cors.get("AllowMethods") or []]
        self.max_age = cors.get("MaxAge")
        self.routes: list[HttpRoute] = []
        for logical_id, fn in functions.functions.items():
            for event in fn.definition.events.values():
                if event.get("Type") != "HttpApi":
                    continue
                event_props = event.get("Properties") or {}
                if event_props.get("ApiId") not in ({"Ref": api_logical_id}, None):
                    continue
                path, method = (
                    str(event_props.get("Path", "/")),
                    str(event_props.get("Method", "ANY")).upper(),
                )
                event_auth = (event_props.get("Auth") or {}).get("Authorizer", default_authorizer)
                self.routes.append(
                    HttpRoute(
                        method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                        path=path,
                        function=logical_id,
                        authorized=bool(event_auth) and event_auth != "NONE",
                        pattern=_path_pattern(path),
                    )
                )
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=_METHODS)])

    def _cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin and (origin in self.allow_origins or "*" in self.allow_origins):
            return {"access-control-allow-origin": origin, "vary": "origin"}
        return {}

    def match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The route serving a request, with its path parameters (most specific first)."""
        candidates = sorted(self.routes, key=lambda r: ("{" in r.path, r.method == "ANY", -len(r.path)))
        for route in candidates:
            if route.method not in (method, "ANY"):
                continue
            found = route.pattern.match(path)
            if found:
                return route, found.groupdict()
        return None

    async def _handle(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        cors = self._cors_headers(origin)
        if (
            request.method == "OPTIONS"
            and request.headers.get("access-control-request-method")
            and self.allow_origins
        ):
            if not cors:
                return Response(status_code=204)
            return Response(
                status_code=204,
                headers={
                    **cors,
                    "access-control-allow-methods": ",".join(self.allow_methods),
                    "access-control-allow-headers": ",".join(h.lower() for h in self.allow_headers),
                    **({"access-control-max-age": str(self.max_age)} if self.max_age else {}),
                },
            )
        matched = self.match(request.method, request.url.path)
        if matched is None:
            return JSONResponse({"message": "Not Found"}, status_code=404, headers=cors)
        route, path_parameters = matched
        claims: dict[str, Any] | None = None
        if route.authorized and self.authorizer is not None:
            claims = await asyncio.to_thread(self.authorizer.claims, request.headers.get("authorization"))
            if claims is None:
                return JSONResponse(
                    {"message": "Unauthorized"},
                    status_code=401,
                    headers={**cors, "www-authenticate": "Bearer"},
                )
        body = await request.body()
        event = self._event(request, route, path_parameters, claims, body)
        try:
            result = await self.functions.ainvoke(route.function, event)
        except FunctionError:
            return JSONResponse({"message": "Internal Server Error"}, status_code=500, headers=cors)
        return _http_response(result, cors)

    def _event(
        self,
        request: Request,
        route: HttpRoute,
        path_parameters: dict[str, str],
        claims: dict[str, Any] | None,
        body: bytes,
    ) -> dict[str, Any]:
        now = time.time()
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for raw_name, raw_value in request.headers.raw:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "cookie":
                cookies.extend(c.strip() for c in value.split(";") if c.strip())
                continue
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        headers["host"] = self.host
        source_ip = request.client.host if request.client else "127.0.0.1"
        headers.setdefault("x-forwarded-for", source_ip)
        query: dict[str, str] = {}
        for key, value in parse_qsl(request.url.query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        try:
            text, encoded = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        context: dict[str, Any] = {
            "accountId": ACCOUNT,
            "apiId": self.api_id,
            "domainName": self.host,
            "domainPrefix": self.api_id,
            "http": {
                "method": request.method,
                "path": request.url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": request.headers.get("user-agent", ""),
            },
            "requestId": _new_id(),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": _request_time(now),
            "timeEpoch": int(now * 1000),
        }
        if claims is not None:
            context["authorizer"] = {
                "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": None}
            }
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.url.path,
            "rawQueryString": request.url.query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if path_parameters:
            event["pathParameters"] = path_parameters
        if body:
            event["body"] = text
        return event


_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


def _claim_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _http_response(result: Any, cors: dict[str, str]) -> Response:
    """Payload format 2.0 response mapping (a dict with statusCode, or anything else as a JSON 200)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(json.dumps(result), status_code=200, media_type="application/json", headers=cors)
    body = result.get("body") or ""
    content = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    headers = {str(k): str(v) for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(key)] = ",".join(str(v) for v in values)
    response = Response(content, status_code=int(result["statusCode"]), headers={**headers, **cors})
    for cookie in result.get("cookies") or []:
        response.raw_headers.append((b"set-cookie", str(cookie).encode("latin-1")))
    return response
