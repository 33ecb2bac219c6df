"""API Gateway's HTTP API stand-in: payload format 2.0 events for the routes of each `HttpApi` event.

The JWT authorizer verifies the bearer token against the user pool's keys (RS256, issuer, audience or
client_id, expiry) and answers 401 before any function runs; CORS preflights are answered from
`CorsConfiguration`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.apigateway import new_id, request_time
from local.functions import FunctionError, FunctionHost
from local.resolve import ACCOUNT, REGION, URL_SUFFIX, Resolver


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


def http_routes(
    functions: FunctionHost, api_logical_id: str, default_authorizer: str | None
) -> list[HttpRoute]:
    """The routes of the functions' `HttpApi` events on this API."""
    routes = []
    for logical_id, fn in functions.functions.items():
        for event in fn.definition.events.values():
            properties = event.get("Properties") or {}
            if event.get("Type") != "HttpApi" or properties.get("ApiId") not in (
                {"Ref": api_logical_id},
                None,
            ):
                continue
            path, method = str(properties.get("Path", "/")), str(properties.get("Method", "ANY")).upper()
            authorizer = (properties.get("Auth") or {}).get("Authorizer", default_authorizer)
            routes.append(
                HttpRoute(
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    path=path,
                    function=logical_id,
                    authorized=bool(authorizer) and authorizer != "NONE",
                    pattern=_path_pattern(path),
                )
            )
    return routes


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


@dataclass(frozen=True)
class Cors:
    """The API's `CorsConfiguration`: which origins may call it, and what a preflight answers."""

    allow_origins: list[str]
    allow_headers: list[str]
    allow_methods: list[str]
    max_age: Any

    @classmethod
    def of(cls, configuration: dict[str, Any]) -> Cors:
        """From the template's `CorsConfiguration` (resolved)."""
        return cls(
            allow_origins=[str(o) for o in configuration.get("AllowOrigins") or []],
            allow_headers=[str(h) for h in configuration.get("AllowHeaders") or []],
            allow_methods=[str(m) for m in configuration.get("AllowMethods") or []],
            max_age=configuration.get("MaxAge"),
        )

    def headers(self, origin: str | None) -> dict[str, str]:
        """What every response to this origin carries (nothing for an origin not allowed)."""
        if origin and (origin in self.allow_origins or "*" in self.allow_origins):
            return {"access-control-allow-origin": origin, "vary": "origin"}
        return {}

    def preflight_headers(self, origin: str | None) -> dict[str, str]:
        """What a preflight (OPTIONS with Access-Control-Request-Method) is answered with."""
        allowed = self.headers(origin)
        if not allowed:
            return {}
        return {
            **allowed,
            "access-control-allow-methods": ",".join(self.allow_methods),
            "access-control-allow-headers": ",".join(h.lower() for h in self.allow_headers),
            **({"access-control-max-age": str(self.max_age)} if self.max_age else {}),
        }


class JwtAuthorizer:
    """API Gateway's JWT authorizer: issuer, audience (aud or client_id), expiry, signature."""

    @classmethod
    def of(cls, authorizer: dict[str, Any], jwks_url: str) -> JwtAuthorizer | None:
        """The authorizer a template's `Authorizers` entry declares; None when it is not a JWT one."""
        configuration = authorizer.get("JwtConfiguration") or {}
        if not configuration:
            return None
        return cls(configuration["issuer"], list(configuration.get("audience") or []), jwks_url)

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
        self.authorizer = JwtAuthorizer.of(
            (auth.get("Authorizers") or {}).get(default_authorizer or "", {}), jwks_url
        )
        self.cors = Cors.of(properties.get("CorsConfiguration") or {})
        self.routes = http_routes(functions, api_logical_id, default_authorizer)
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=_METHODS)])

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
        cors = self.cors.headers(origin)
        if (
            request.method == "OPTIONS"
            and request.headers.get("access-control-request-method")
            and self.cors.allow_origins
        ):
            return Response(status_code=204, headers=self.cors.preflight_headers(origin))
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
        headers, cookies = _headers_and_cookies(request)
        headers["host"] = self.host
        source_ip = request.client.host if request.client else "127.0.0.1"
        headers.setdefault("x-forwarded-for", source_ip)
        query = _joined(parse_qsl(request.url.query, keep_blank_values=True))
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
            "requestId": new_id(),
            "routeKey": route.route_key,
            "stage": "$default",
            "time": request_time(now),
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


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Payload 2.0 joins the values of a repeated header or query parameter with commas."""
    joined: dict[str, str] = {}
    for key, value in pairs:
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _headers_and_cookies(request: Request) -> tuple[dict[str, str], list[str]]:
    """The request's headers (names in lower case) and, apart, its cookies, as payload 2.0 has them."""
    pairs = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in request.headers.raw]
    cookies = [c.strip() for name, value in pairs if name == "cookie" for c in value.split(";") if c.strip()]
    return _joined((name, value) for name, value in pairs if name != "cookie"), cookies


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
