"""The bridge's HTTP endpoints on the task's loopback-only port: /health (ECS's container health check),
/status (what the bridge is doing, for operators) and POST /shutdown (from the same host only)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.app import Bridge

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def create_app(bridge: Bridge) -> Starlette:
    """The ASGI app around `bridge`: its lifespan boots it in the background and stops it on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        boot = asyncio.create_task(bridge.start(), name="boot")
        try:
            yield
        finally:
            await bridge.stop("process stopping")
            boot.cancel()
            with contextlib.suppress(BaseException):
                await boot

    async def health(request: Request) -> JSONResponse:
        ok, reason = bridge.health()
        return JSONResponse({"healthy": ok, "reason": reason}, status_code=200 if ok else 503)

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(bridge.status())

    async def shutdown(request: Request) -> JSONResponse:
        host = request.client.host if request.client else ""
        if host not in LOOPBACK:
            return JSONResponse({"error": "forbidden"}, status_code=403)
        bridge.on_exit()
        return JSONResponse({"status": "stopping"}, status_code=202)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/status", status),
            Route("/shutdown", shutdown, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
