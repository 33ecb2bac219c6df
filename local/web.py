"""The web chat as CloudFront serves it: the same build, cache headers, SPA fallback and security headers.

The security headers come from the template's `WebSecurityHeaders` response headers policy, so the browser
tests run under the Content-Security-Policy that is deployed. Only what cannot hold on loopback changes:
`connect-src` names the local API ports instead of AWS hosts, and `upgrade-insecure-requests` and HSTS
are left out (everything here is plain http on 127.0.0.1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from local.resolve import Resolver
from local.template import TemplateError, resources_of_type
from scripts.build_frontend import NO_CACHE, cache_control, content_type

HEADERS_POLICY = "WebSecurityHeaders"
MAX_KEY_BYTES = 1024
"""The longest S3 object key, in UTF-8 bytes; CloudFront passes the path to S3 as the key."""
_DROPPED_DIRECTIVES = ("upgrade-insecure-requests", "block-all-mixed-content")


def security_headers(resolver: Resolver, connect_src: list[str]) -> dict[str, str]:
    """The template's response headers policy as plain headers, with `connect-src` set to `connect_src`."""
    policies = resources_of_type(resolver.template, "AWS::CloudFront::ResponseHeadersPolicy")
    if HEADERS_POLICY not in policies:
        raise TemplateError(f"template.yaml has no {HEADERS_POLICY} (AWS::CloudFront::ResponseHeadersPolicy)")
    config = resolver.resolve(policies[HEADERS_POLICY]["Properties"]["ResponseHeadersPolicyConfig"])
    security = config.get("SecurityHeadersConfig") or {}
    headers: dict[str, str] = {}
    csp = (security.get("ContentSecurityPolicy") or {}).get("ContentSecurityPolicy")
    if csp:
        headers["content-security-policy"] = localise_csp(str(csp), connect_src)
    if security.get("ContentTypeOptions"):
        headers["x-content-type-options"] = "nosniff"
    if frame := security.get("FrameOptions"):
        headers["x-frame-options"] = str(frame["FrameOption"])
    if referrer := security.get("ReferrerPolicy"):
        headers["referrer-policy"] = str(referrer["ReferrerPolicy"])
    for item in (config.get("CustomHeadersConfig") or {}).get("Items", []):
        headers[str(item["Header"]).lower()] = str(item["Value"])
    return headers


def localise_csp(csp: str, connect_src: list[str]) -> str:
    """Replace `connect-src` and drop the directives that only make sense over TLS."""
    directives = []
    for directive in (d.strip() for d in csp.split(";")):
        name = directive.split(None, 1)[0] if directive else ""
        if not directive or name.lower() in _DROPPED_DIRECTIVES:
            continue
        replaced = name.lower() == "connect-src"
        directives.append(f"connect-src {' '.join(connect_src)}" if replaced else directive)
    return "; ".join(directives)


class _Headers:
    """Adds fixed headers to every HTTP response of the wrapped app."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        await self.app(scope, receive, with_headers)


def _build_file(root: Path, key: str) -> Path | None:
    """The file of the build an object key names; None if it is outside the build, missing, or a name no
    file can have (a NUL byte, a name too long for the disk): S3 holds no such object either."""
    if "\x00" in key:
        return None
    try:
        file = (root / key).resolve()
        return file if root in file.parents and file.is_file() else None
    except OSError:
        return None


def web_app(
    build_dir: Path,
    runtime_config: Callable[[], dict[str, Any]],
    headers: Mapping[str, str],
    mounts: Mapping[str, ASGIApp] | None = None,
) -> ASGIApp:
    """Serve a frontend build: files with their cache headers, `/config.json`, and the SPA fallback."""
    root = build_dir.resolve()

    async def config_json(request: Request) -> Response:
        return JSONResponse(runtime_config(), headers={"cache-control": NO_CACHE})

    async def static(request: Request) -> Response:
        path = request.path_params["path"].lstrip("/")
        last = path.rsplit("/", 1)[-1]
        if "." not in last:
            # Like the distribution's viewer-request function: routes without a file extension get the app.
            path = "index.html"
        if len(path.encode("utf-8", "replace")) > MAX_KEY_BYTES:
            return PlainTextResponse("KeyTooLongError: Your key is too long", status_code=400)
        file = _build_file(root, path)
        if file is None:
            return PlainTextResponse("Not Found", status_code=404)
        # Headers from the file actually served (`/assets/%2e%2e/index.html` is the page, not an asset).
        served = file.relative_to(root).as_posix()
        return FileResponse(
            file, media_type=content_type(served), headers={"cache-control": cache_control(served)}
        )

    routes: list[Any] = [Route("/config.json", config_json)]
    routes += [Mount(prefix, app) for prefix, app in (mounts or {}).items()]
    routes.append(Route("/{path:path}", static, methods=["GET", "HEAD"]))
    return _Headers(Starlette(routes=routes), headers)
