"""A stand-in model on loopback: an OpenAI-style chat-completions endpoint that streams "ok" to every request.

OpenClaw's first turn after a boot loads most of its agent runtime (module chunks, worker threads, its agent
database), which a turn on this model does without a paid model ever being called: the image build uses it
to fill the compile cache (compile_cache.py), the bridge to rehearse the first turn at boot (rehearsal.py).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PROVIDER_ID = "bridge-stand-in"
MODEL_ID = "stand-in"


class StandInModel(ThreadingHTTPServer):
    """The endpoint, serving from a thread of its own between `start()` and `close()` (or as a context)."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _StandInHandler)
        self._thread = threading.Thread(target=self.serve_forever, name="stand-in-model", daemon=True)
        self.requests = 0
        """How many completions it answered."""

    @classmethod
    def preferring(cls, port: int) -> StandInModel:
        """One on `port` if it is free, else on any free port.

        The same port at every boot keeps openclaw.json the same from one task to the next, and OpenClaw
        skips its state migrations (2-3 s) on a restored home only while a hash of its config is unchanged;
        a port taken by something else only costs that time, never the boot.
        """
        try:
            return cls(port)
        except OSError:
            return cls(0)

    @property
    def url(self) -> str:
        """Its base URL (OpenClaw appends /chat/completions)."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> None:
        """Serve until `close()`."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port; safe to call twice."""
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=10)
        self.server_close()

    def __enter__(self) -> StandInModel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def provider_entry(model: StandInModel) -> dict[str, Any]:
    """Its `models.providers` entry in openclaw.json: no key (no Authorization header), nothing to pay."""
    return {
        "baseUrl": model.url,
        "api": "openai-completions",
        "models": [
            {
                "id": MODEL_ID,
                "name": MODEL_ID,
                "reasoning": False,
                "input": ["text"],
                "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                "contextWindow": 128_000,
                "maxTokens": 16,
            }
        ],
    }


class _StandInHandler(BaseHTTPRequestHandler):
    server: StandInModel

    def log_message(self, format: str, *args: object) -> None:  # `format`: the base class's name
        return

    def do_POST(self) -> None:
        """Stream one short answer as server-sent events, whatever was asked."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        ]
        head = {"id": "stand-in", "object": "chat.completion.chunk", "model": MODEL_ID}
        body = "".join(f"data: {json.dumps({**head, **chunk})}\n\n" for chunk in chunks)
        payload = (body + "data: [DONE]\n\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
