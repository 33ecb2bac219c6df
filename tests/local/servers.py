"""Helpers for the local stack's tests: an ASGI app on a loopback port, fakes for the functions, polling."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local.functions import FunctionHost
from local.http_server import server_config
from local.resolve import Resolver

T = TypeVar("T")


@dataclass
class LoopbackServer:
    """An app served by uvicorn on 127.0.0.1 in a background thread with its own event loop."""

    url: str
    port: int
    loop: asyncio.AbstractEventLoop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the server's loop (where the app's tasks and processes live)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


@contextmanager
def serve(app: Any) -> Iterator[LoopbackServer]:
    """Serve `app` on a free loopback port for the duration of the block, as the stack serves it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(server_config(app))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(server.serve(sockets=[sock])), name="uvicorn", daemon=True
    )
    thread.start()
    eventually(lambda: server.started, what="uvicorn to start")
    try:
        yield LoopbackServer(url=f"http://127.0.0.1:{port}", port=port, loop=loop)
    finally:
        server.should_exit = True
        thread.join(15)
        loop.close()
        sock.close()


def sigv4_headers(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    service: str,
    access_key: str = "local",
    secret: str = "local",
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers botocore sends for this request, signed now with SigV4 (its own signer, as boto3 signs)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(access_key, secret), service, region).add_auth(request)
    return dict(request.headers.items())


def eventually(predicate: Callable[[], T], *, timeout: float = 15, what: str = "the condition") -> T:
    """Poll until `predicate()` is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class FakeFunctions:
    """The template's functions with every handler replaced by a recorder: no function module is imported.

    `replies[logical_id]` decides what a function returns (a 200 by default); `calls[logical_id]` lists
    the events it received, in order.
    """

    def __init__(self, resolver: Resolver) -> None:
        self.host = FunctionHost(resolver, {})
        self.calls: dict[str, list[dict[str, Any]]] = {logical_id: [] for logical_id in self.host.functions}
        self.replies: dict[str, Callable[[dict[str, Any]], Any]] = {}
        for logical_id, fn in self.host.functions.items():
            fn.handler = self._recorder(logical_id)

    def _recorder(self, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
        def handle(event: dict[str, Any], context: Any) -> Any:
            self.calls[logical_id].append(event)
            reply = self.replies.get(logical_id)
            return reply(event) if reply is not None else {"statusCode": 200}

        return handle
