"""The offline model: an OpenAI-compatible chat-completions server for running without any API key.

It says plainly that it is the offline model and understands a few requests, answering them with the
real tool calls the OpenClaw gateway offers (write, ls, read), so the agent really acts on its workspace:

- "create file NAME with the text CONTENT" → `write`, then "Created NAME."
- "list the files"                          → `ls` on ".", then the listing
- "show NAME" / "read NAME" / "cat NAME"    → `read`, then the file's content verbatim
- "slowly count to N"                       → "1 2 … N", one number per chunk, ~0.2 s apart
- "fail with 500"                           → HTTP 500
- "say N words"                             → N words
- "write N paragraphs"                      → N numbered paragraphs of about 450 characters each
- "wide markdown demo"                      → a long code line, a wide table and a long link (phones)
- "markdown demo"                           → a heading, a list, a table, a code block and a link
- anything else                             → an echo explaining that no API key is configured

Run it with `python -m local.offline_model --port 0`; it prints `listening on http://127.0.0.1:PORT`.
It binds loopback only and keeps nothing on disk (the last requests stay in memory for tests).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Final

MODEL_ID: Final = "offline-model"
PREFIX: Final = "(offline model) "
COUNT_INTERVAL_SECONDS: Final = 0.2
MAX_COUNT: Final = 10_000
MAX_WORDS: Final = 100_000
_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
_INTERNAL_MARKER: Final = "OPENCLAW_INTERNAL_CONTEXT"
# The gateway prefixes user text with the time it was sent: "[Sun 2026-11-22 05:12 UTC] ".
_TIMESTAMP_PREFIX = re.compile(r"^\s*\[[^\]\n]*\d{4}-\d{2}-\d{2}[^\]\n]*\]\s*")
# On a session's first turn it appends a "Runtime: agent=main | session=… | channel=…" line.
_RUNTIME_LINE = re.compile(r"\n+\s*Runtime: agent=[^\n]*\s*$")

_CREATE = re.compile(
    r"\bcreate (?:a )?file\s+(?P<name>\S+)\s+with (?:the )?(?:text|content)\s+(?P<content>.+)", re.I | re.S
)
_LIST = re.compile(r"\blist (?:the )?files\b", re.I)
_SHOW = re.compile(r"\b(?:show|read|cat)(?: me)? (?:the )?(?:file )?(?P<name>[^\s\"'`]+)", re.I)
_COUNT = re.compile(r"\bslowly count to (?P<n>\d+)\b", re.I)
_FAIL = re.compile(r"\bfail with 500\b", re.I)
_MARKDOWN = re.compile(r"\bmarkdown demo\b", re.I)
MARKDOWN_DEMO: Final = (
    "## What the chat can show\n\n",
    "- **bold**, *italic* and `inline code`\n",
    "- a [link to OpenClaw](https://docs.openclaw.ai)\n\n",
    "| provider | offline |\n|---|---|\n| this model | yes |\n\n",
    '```python\nprint("hello from the offline model")\n```\n',
)
_WIDE_MARKDOWN = re.compile(r"\bwide markdown demo\b", re.I)
# Wider than any phone: a code line and a table that must scroll inside their message, a link that must wrap.
_WIDE_COLUMNS: Final = 10
WIDE_MARKDOWN_DEMO: Final = (
    "## Wider than a phone\n\n",
    "```python\nresult = combine(" + ", ".join(f"argument_number_{i}" for i in range(1, 13)) + ")\n```\n\n",
    "| " + " | ".join(f"column {i}" for i in range(1, _WIDE_COLUMNS + 1)) + " |\n",
    "|" + "---|" * _WIDE_COLUMNS + "\n",
    "| " + " | ".join(f"value-of-column-{i}" for i in range(1, _WIDE_COLUMNS + 1)) + " |\n\n",
    "See https://docs.openclaw.ai/" + "averylongpathsegment" * 12 + " for more.\n",
)
_SAY = re.compile(r"\bsay (?P<n>\d+) words\b", re.I)
_PARAGRAPHS = re.compile(r"\bwrite (?P<n>\d+) paragraphs\b", re.I)
MAX_PARAGRAPHS: Final = 1000
_FILLER: Final = " ".join(["The agent keeps writing so that the reply grows long."] * 8)


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asks the agent to make."""

    name: str
    arguments: dict[str, Any]
    call_id: str = field(default_factory=lambda: f"call_offline_{uuid.uuid4().hex[:16]}")


@dataclass(frozen=True)
class Reply:
    """What the model answers: text pieces (streamed one per chunk), a tool call, or an HTTP error."""

    pieces: tuple[str, ...] = ()
    tool_call: ToolCall | None = None
    interval: float = 0.0
    http_status: int = 200

    @property
    def text(self) -> str:
        """The full text of the reply."""
        return "".join(self.pieces)


class UnavailableTool(Exception):
    """The request did not offer the tool an intent needs."""


def user_text(content: Any) -> str:
    """The plain text of an OpenAI message content (a string or a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def clean_user_text(text: str) -> str:
    """The text the person typed: without the gateway's timestamp prefix and runtime line."""
    return _RUNTIME_LINE.sub("", _TIMESTAMP_PREFIX.sub("", text, count=1)).strip()


def decide(body: dict[str, Any]) -> Reply:
    """The reply to one chat-completions request body."""
    visible = _visible_messages(body)
    last_role = visible[-1].get("role") if visible else None
    if last_role == "tool":
        return _after_tool(visible)
    if last_role == "assistant":
        # Asked to continue its own turn: never repeat a tool call, that could loop forever.
        return _text("That is all.")
    try:
        return _answer(_last_user_text(visible), _offered_tools(body))
    except UnavailableTool as missing:
        return _text(f"I would use the {missing} tool for that, but the request did not offer it.")


def _visible_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's messages, without the internal-context user message the gateway appends."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    return [m for m in messages if _INTERNAL_MARKER not in user_text(m.get("content"))]


def _last_user_text(visible: Sequence[dict[str, Any]]) -> str:
    """What the person typed last ("" when they wrote nothing)."""
    last_user = next((m for m in reversed(visible) if m.get("role") == "user"), None)
    return clean_user_text(user_text(last_user.get("content"))) if last_user else ""


def _answer(text: str, tools: dict[str, set[str]]) -> Reply:
    """The reply to what the person typed."""
    if match := _CREATE.search(text):
        name, content = match["name"], match["content"].strip()
        return Reply(tool_call=_tool_call(tools, "write", path=name, content=content))
    if _LIST.search(text):
        return Reply(tool_call=_tool_call(tools, "ls", path="."))
    if match := _COUNT.search(text):
        numbers = _series(match["n"], MAX_COUNT, str, " ")
        return Reply(pieces=(PREFIX, *numbers), interval=COUNT_INTERVAL_SECONDS)
    if _FAIL.search(text):
        return Reply(http_status=500)
    if match := _SAY.search(text):
        return Reply(pieces=(PREFIX, *_series(match["n"], MAX_WORDS, lambda i: f"word{i}", " ")))
    if match := _PARAGRAPHS.search(text):
        paragraphs = _series(match["n"], MAX_PARAGRAPHS, lambda i: f"Paragraph {i}. {_FILLER}", "\n\n")
        return Reply(pieces=(PREFIX.strip() + "\n\n", *paragraphs))
    if _WIDE_MARKDOWN.search(text):
        return Reply(pieces=(PREFIX.strip() + "\n\n", *WIDE_MARKDOWN_DEMO))
    if _MARKDOWN.search(text):
        return Reply(pieces=(PREFIX.strip() + "\n\n", *MARKDOWN_DEMO))
    if match := _SHOW.search(text):
        return Reply(tool_call=_tool_call(tools, "read", path=match["name"]))
    return _text(f"No API key is configured, so this is the offline model. You said: {text}")


def _series(asked: str, limit: int, item: Callable[[int], str], separator: str) -> tuple[str, ...]:
    """Items 1…N (N as asked, at most `limit`), each after the first preceded by `separator`."""
    n = min(int(asked), limit)
    return tuple(f"{'' if i == 1 else separator}{item(i)}" for i in range(1, n + 1))


def _after_tool(visible: Sequence[dict[str, Any]]) -> Reply:
    """The answer once the agent has run our tool call and sent its result back."""
    result_message = visible[-1]
    result = user_text(result_message.get("content")).strip()
    call = _find_call(visible, str(result_message.get("tool_call_id", "")))
    name = call[0] if call else ""
    path = str(call[1].get("path", "")) if call else ""
    if name == "write":
        return _text(
            f"Created {path}." if not _looks_failed(result) else f"Could not create {path}: {result}"
        )
    if name == "ls":
        return _text(f"Files:\n{result}" if result else "The workspace is empty.")
    if name == "read":
        return _text(f"Contents of {path}:\n{result}")
    return _text(f"The tool finished: {result}")


def _looks_failed(result: str) -> bool:
    """Whether a tool result reads like an error."""
    return result.lower().startswith(("error", "failed", "enoent"))


def _find_call(messages: Sequence[dict[str, Any]], call_id: str) -> tuple[str, dict[str, Any]] | None:
    """The (tool name, arguments) of the assistant's call with this id."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if not isinstance(call, dict) or (call_id and call.get("id") != call_id):
                continue
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except json.JSONDecodeError:
                arguments = {}
            return str(function.get("name", "")), arguments if isinstance(arguments, dict) else {}
    return None


def _offered_tools(body: dict[str, Any]) -> dict[str, set[str]]:
    """The tools the request offers: name → its parameter names."""
    offered: dict[str, set[str]] = {}
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            properties = (function.get("parameters") or {}).get("properties") or {}
            offered[str(function["name"])] = set(properties)
    return offered


def _tool_call(tools: dict[str, set[str]], name: str, **arguments: str) -> ToolCall:
    """A call to one of the offered tools, with only the arguments its schema declares."""
    if name not in tools:
        raise UnavailableTool(name)
    declared = tools[name]
    # A tool without a schema accepts what we send; otherwise never send an argument it does not know.
    kept = {key: value for key, value in arguments.items() if not declared or key in declared}
    return ToolCall(name=name, arguments=kept)


def _text(text: str) -> Reply:
    """A plain text reply, streamed word by word."""
    words = re.findall(r"\S+\s*|\s+", PREFIX + text)
    return Reply(pieces=tuple(words))


def completion_chunks(reply: Reply, *, completion_id: str, created: int) -> Iterator[dict[str, Any]]:
    """The chat.completion.chunk objects of a streamed reply (without pacing)."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield chunk({"role": "assistant", "content": ""})
    if reply.tool_call is not None:
        yield chunk({"tool_calls": [{"index": 0, **_openai_tool_call(reply.tool_call)}]})
        yield chunk({}, "tool_calls")
        return
    for piece in reply.pieces:
        yield chunk({"content": piece})
    yield chunk({}, "stop")


def completion(reply: Reply, *, completion_id: str, created: int) -> dict[str, Any]:
    """The chat.completion object of a non-streamed reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    finish = "stop"
    if reply.tool_call is not None:
        message["tool_calls"] = [_openai_tool_call(reply.tool_call)]
        finish = "tool_calls"
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL_ID,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(reply),
    }


def _openai_tool_call(call: ToolCall) -> dict[str, Any]:
    """A tool call as the OpenAI API writes it."""
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
    }


def _usage(reply: Reply) -> dict[str, int]:
    """A rough token count, so clients that read usage get numbers."""
    output = max(1, len(reply.text.split()))
    return {"prompt_tokens": 1, "completion_tokens": output, "total_tokens": output + 1}


class OfflineModelServer(ThreadingHTTPServer):
    """The HTTP server; `url` is the OpenAI base URL ("http://127.0.0.1:PORT/v1")."""

    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        # Loopback only: the offline model is for this machine's gateway, never for the network.
        super().__init__(("127.0.0.1", port), _Handler)
        self.stopping = threading.Event()
        self.recent_requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    def shutdown(self) -> None:
        """Stop serving; slow streams notice and end early."""
        self.stopping.set()
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: OfflineModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # `format`: the base class's name
        """Keep quiet: request lines would only clutter test and local-stack output."""

    def do_GET(self) -> None:
        """GET /v1/models: the one model it offers."""
        if self.path.rstrip("/") not in ("/v1/models", "/models"):
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "offline"}
        self._send_json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        """POST /v1/chat/completions: streamed (SSE) or plain JSON."""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        body = self._read_json()
        if body is None:
            self._send_json(
                400, {"error": {"message": "the body must be a JSON object", "type": "invalid_request"}}
            )
            return
        self.server.recent_requests.append(body)
        reply = decide(body)
        if reply.http_status != 200:
            error = {"message": "the offline model was asked to fail", "type": "server_error"}
            self._send_json(reply.http_status, {"error": error})
            return
        completion_id = f"chatcmpl-offline-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        if body.get("stream"):
            self._stream(reply, body, completion_id=completion_id, created=created)
        else:
            self._send_json(200, completion(reply, completion_id=completion_id, created=created))

    def _read_json(self) -> dict[str, Any] | None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length <= 0 or length > _MAX_BODY_BYTES:
            return None
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    def _stream(self, reply: Reply, body: dict[str, Any], *, completion_id: str, created: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No Content-Length: the stream ends when the connection closes.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for index, chunk in enumerate(
                completion_chunks(reply, completion_id=completion_id, created=created)
            ):
                # Pace only between content pieces (chunk 0 is the role, the last is finish_reason).
                if reply.interval and index > 1 and self.server.stopping.wait(reply.interval):
                    return
                self._event(json.dumps(chunk))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage_chunk = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": MODEL_ID,
                    "choices": [],
                    "usage": _usage(reply),
                }
                self._event(json.dumps(usage_chunk))
            self._event("[DONE]")
        except (BrokenPipeError, ConnectionResetError):
            # The client went away (an aborted run): nothing to clean up.
            return

    def _event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(port: int = 0) -> tuple[OfflineModelServer, threading.Thread]:
    """Start the offline model on 127.0.0.1:port (0 picks a free one) in a daemon thread."""
    server = OfflineModelServer(port)
    thread = threading.Thread(target=server.serve_forever, name="offline-model", daemon=True)
    thread.start()
    return server, thread


def main(argv: Sequence[str] | None = None) -> int:
    """Run the offline model until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m local.offline_model", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    args = parser.parse_args(argv)
    server, thread = serve(args.port)
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A parent reads this line to learn the port.
    print(f"listening on http://127.0.0.1:{server.port}", flush=True)
    done.wait()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
