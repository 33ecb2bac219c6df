"""The offline model over HTTP: OpenAI answers, SSE streams, tool calls named as the gateway names them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.offline_model import MAX_COUNT, PREFIX, OfflineModelServer, decide, serve

REPO = Path(__file__).resolve().parents[2]
STAMP = "[Sun 2026-11-22 05:12 UTC] "
RUNTIME = (
    "\n\nRuntime: agent=main | session=agent:main:web:c1 | channel=webchat | capabilities=markdowndetails"
)
INTERNAL = [
    {
        "type": "text",
        "text": "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nActive exec sessions: none\n"
        "<<<END_OPENCLAW_INTERNAL_CONTEXT>>>",
    }
]


def tool(name: str, *params: str) -> dict[str, Any]:
    properties = {p: {"type": "string"} for p in params}
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": properties}},
    }


# The tools (names and argument names) the pinned gateway sends, as captured from a real request.
GATEWAY_TOOLS = [
    tool("apply_patch", "input"),
    tool("edit", "path", "edits"),
    tool("exec", "command"),
    tool("ls", "path", "limit", "after"),
    tool("read", "path", "offset", "limit", "cursor", "optional"),
    tool("write", "path", "content"),
]


@pytest.fixture(scope="module")
def model() -> Iterator[OfflineModelServer]:
    server, thread = serve(0)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def client(model: OfflineModelServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=model.url, timeout=30) as http:
        yield http


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": STAMP + text}


def request(
    *messages: dict[str, Any], stream: bool = False, tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A request shaped like the gateway's: system prompt, turns, the trailing internal-context message."""
    body: dict[str, Any] = {
        "model": "offline-model",
        "messages": [{"role": "system", "content": "You are a personal assistant."}, *messages]
        + [{"role": "user", "content": INTERNAL}],
        "tools": GATEWAY_TOOLS if tools is None else tools,
        "tool_choice": "auto",
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def ask(client: httpx.Client, *messages: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/chat/completions", json=request(*messages, **kwargs))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def answer_text(result: dict[str, Any]) -> str:
    return str(result["choices"][0]["message"]["content"])


def tool_call(result: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    return call["function"]["name"], json.loads(call["function"]["arguments"]), call["id"]


def after_tool(name: str, arguments: dict[str, Any], result: str, prompt: str) -> list[dict[str, Any]]:
    """The turn as the gateway replays it: the user's prompt, our call, the tool's result."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }
    return [
        user(prompt),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]


def sse_events(client: httpx.Client, body: dict[str, Any]) -> list[str]:
    with client.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def streamed_text(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events[:-1]]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_models_lists_the_offline_model(client: httpx.Client) -> None:
    # Given / When
    response = client.get("/models")

    # Then
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["offline-model"]


def test_it_binds_loopback_only(model: OfflineModelServer) -> None:
    # Given / When / Then
    assert model.server_address[0] == "127.0.0.1"
    assert model.url == f"http://127.0.0.1:{model.port}/v1"


def test_plain_messages_are_echoed_and_say_it_is_the_offline_model(client: httpx.Client) -> None:
    # Given a first turn, decorated by the gateway with a timestamp, a runtime line and internal context
    # When
    result = ask(client, {"role": "user", "content": STAMP + "hello there" + RUNTIME})

    # Then it answers the person's own words, plainly labelled
    assert answer_text(result) == (
        "(offline model) No API key is configured, so this is the offline model. You said: hello there"
    )
    assert result["object"] == "chat.completion" and result["choices"][0]["finish_reason"] == "stop"


def test_it_answers_the_last_user_message(client: httpx.Client) -> None:
    # Given an earlier exchange and a new message in a list-of-parts content
    earlier = [user("first"), {"role": "assistant", "content": "(offline model) ..."}]
    latest = {"role": "user", "content": [{"type": "text", "text": STAMP + "second"}]}

    # When / Then
    assert answer_text(ask(client, *earlier, latest)).endswith("You said: second")


def test_streamed_answer_is_sse_chunks_then_done(client: httpx.Client) -> None:
    # Given / When a streamed request
    events = sse_events(client, request(user("stream please"), stream=True))

    # Then the chunks add up to the answer, finish with "stop", carry usage, and end with [DONE]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert streamed_text(events).endswith("You said: stream please")
    assert streamed_text(events).startswith("(offline model) ")
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_create_file_calls_write_with_path_and_content(client: httpx.Client) -> None:
    # Given / When
    name, arguments, _ = tool_call(ask(client, user("create file test.md with the text hello contract")))

    # Then
    assert (name, arguments) == ("write", {"path": "test.md", "content": "hello contract"})


def test_create_file_streams_a_tool_call_chunk(client: httpx.Client) -> None:
    # Given / When a streamed request
    events = sse_events(client, request(user("Create a file notes.txt with content buy milk"), stream=True))

    # Then one chunk carries the whole call and the stream finishes with "tool_calls"
    chunks = [json.loads(e) for e in events[:-1]]
    calls = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert len(calls) == 1
    function = calls[0][0]["function"]
    assert function["name"] == "write"
    assert json.loads(function["arguments"]) == {"path": "notes.txt", "content": "buy milk"}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_after_write_it_reports_the_created_file(client: httpx.Client) -> None:
    # Given the write tool's result is the last message
    turn = after_tool(
        "write", {"path": "test.md", "content": "x"}, "Successfully wrote 1 bytes to test.md", "create…"
    )

    # When / Then
    assert answer_text(ask(client, *turn)) == "(offline model) Created test.md."


def test_asked_to_continue_its_own_turn_it_never_repeats_a_tool_call(client: httpx.Client) -> None:
    # Given a conversation that ends with the model's own message after a create request
    turn = [user("create file a.md with the text b"), {"role": "assistant", "content": "(offline model) ok"}]

    # When / Then
    result = ask(client, *turn)
    assert "tool_calls" not in result["choices"][0]["message"]
    assert answer_text(result) == "(offline model) That is all."


def test_list_files_calls_ls_then_shows_the_listing(client: httpx.Client) -> None:
    # Given / When
    name, arguments, _ = tool_call(ask(client, user("please list the files")))

    # Then it lists the workspace, and reports what the tool found
    assert (name, arguments) == ("ls", {"path": "."})
    listing = '"notes.txt"\n"test.md"'
    text = answer_text(ask(client, *after_tool("ls", {"path": "."}, listing, "list the files")))
    assert text == f"(offline model) Files:\n{listing}"


@pytest.mark.parametrize(
    "prompt", ["show test.md", "read the file test.md", "cat test.md", "Show me test.md"]
)
def test_show_calls_read_then_quotes_the_content_verbatim(client: httpx.Client, prompt: str) -> None:
    # Given / When
    result = ask(client, user(prompt))

    # Then
    assert tool_call(result)[:2] == ("read", {"path": "test.md"})
    text = answer_text(
        ask(client, *after_tool("read", {"path": "test.md"}, "hello contract\nline 2", prompt))
    )
    assert "hello contract\nline 2" in text


def test_a_missing_tool_is_explained_not_called(client: httpx.Client) -> None:
    # Given a request that offers no write tool
    result = ask(client, user("create file a.md with the text b"), tools=[tool("read", "path")])

    # When / Then
    assert "tool_calls" not in result["choices"][0]["message"]
    assert "write tool" in answer_text(result)


def test_slowly_count_streams_one_number_per_chunk(client: httpx.Client) -> None:
    # Given / When
    events = sse_events(client, request(user("slowly count to 5"), stream=True))

    # Then
    chunks = [json.loads(e) for e in events[:-1]]
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert [p.strip() for p in pieces if p and p.strip().isdigit()] == ["1", "2", "3", "4", "5"]
    assert streamed_text(events) == "(offline model) 1 2 3 4 5"


def test_a_client_that_disconnects_mid_stream_does_not_break_the_server(
    client: httpx.Client, model: OfflineModelServer
) -> None:
    # Given a slow count that the client abandons after the first number (an aborted run)
    with client.stream(
        "POST", "/chat/completions", json=request(user("slowly count to 1000"), stream=True)
    ) as resp:
        for line in resp.iter_lines():
            if '"1"' in line:
                break

    # When / Then the next request is served normally
    assert answer_text(ask(client, user("still there?"))).endswith("You said: still there?")


def test_fail_with_500_returns_a_server_error(client: httpx.Client) -> None:
    # Given / When
    response = client.post("/chat/completions", json=request(user("please fail with 500"), stream=True))

    # Then
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"


def test_say_n_words_replies_with_that_many_words(client: httpx.Client) -> None:
    # Given / When
    text = answer_text(ask(client, user("say 300 words")))

    # Then the words follow the label
    assert text.startswith("(offline model) ")
    assert len(text.removeprefix("(offline model) ").split()) == 300


def test_markdown_demo_shows_what_the_web_chat_renders(client: httpx.Client) -> None:
    # Given / When
    text = answer_text(ask(client, user("markdown demo please")))

    # Then a labelled reply with a heading, a list, a table, a code block and a link
    assert text.startswith("(offline model)\n\n## ")
    for part in ("\n- **bold**", "| provider | offline |", "```python\n", "](https://docs.openclaw.ai)"):
        assert part in text


def test_wide_markdown_demo_is_wider_than_a_phone_in_code_table_and_link(client: httpx.Client) -> None:
    # Given / When
    text = answer_text(ask(client, user("wide markdown demo please")))

    # Then a labelled reply whose code line, table row and link are each far wider than 390 px of text
    assert text.startswith("(offline model)\n\n## ")
    code = text.split("```python\n")[1].split("\n```")[0]
    row = next(line for line in text.splitlines() if line.startswith("| value-of-column-1 "))
    link = next(word for word in text.split() if word.startswith("https://"))
    assert len(code) > 150 and row.count("|") == 11 and len(link) > 150


def test_write_n_paragraphs_replies_with_that_many_numbered_paragraphs() -> None:
    # Given / When
    reply = decide(request(user("write 3 paragraphs")))

    # Then a labelled reply, one paragraph per piece, separated by blank lines
    assert reply.pieces[0] == "(offline model)\n\n"
    assert [piece[:14] for piece in reply.pieces[1:]] == [
        "Paragraph 1. T",
        "\n\nParagraph 2.",
        "\n\nParagraph 3.",
    ]
    assert all(400 < len(piece.strip()) < 500 for piece in reply.pieces[1:])


def test_counts_and_words_are_capped_and_zero_is_nothing() -> None:
    # Given / When a count beyond the cap, and zero words
    counted = decide(request(user(f"slowly count to {MAX_COUNT * 2}")))
    nothing = decide(request(user("say 0 words")))

    # Then the count stops at the cap, paced; zero words is the label alone
    assert counted.pieces[-1] == f" {MAX_COUNT}" and len(counted.pieces) == MAX_COUNT + 1
    assert counted.interval > 0
    assert nothing.pieces == (PREFIX,) and nothing.interval == 0


def test_the_request_listed_first_in_the_module_docstring_wins() -> None:
    # Given / When messages that match two requests each
    create = decide(request(user("create file list.md with the text list the files"))).tool_call
    listing = decide(request(user("list the files, then show notes.md"))).tool_call
    demo = decide(request(user("markdown demo, then read notes.md")))
    failure = decide(request(user("fail with 500, then say 3 words")))

    # Then the one listed first is answered
    assert create is not None and create.name == "write"
    assert create.arguments == {"path": "list.md", "content": "list the files"}
    assert listing is not None and (listing.name, listing.arguments) == ("ls", {"path": "."})
    assert demo.tool_call is None and demo.text.startswith("(offline model)\n\n## ")
    assert failure.http_status == 500 and failure.pieces == ()


def test_a_tool_the_request_did_not_offer_is_named_for_every_intent() -> None:
    # Given a request that offers no tools at all
    # When listing or reading is asked for
    # Then each reply names the tool it would have used
    assert decide(request(user("list the files"), tools=[])).text.endswith(
        "use the ls tool for that, but the request did not offer it."
    )
    assert "the read tool" in decide(request(user("cat notes.md"), tools=[])).text


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": None},
        {"messages": ["hello", 5, {"role": "system", "content": "You are a personal assistant."}]},
        {"messages": [{"role": "user", "content": INTERNAL}]},
    ],
)
def test_a_request_without_anything_the_person_wrote_is_echoed_empty(body: dict[str, Any]) -> None:
    # Given / When / Then
    assert (
        decide(body).text
        == "(offline model) No API key is configured, so this is the offline model. You said: "
    )


@pytest.mark.parametrize(
    ("name", "arguments", "result", "expected"),
    [
        ("write", {"path": "a.md"}, "Error: EACCES", "Could not create a.md: Error: EACCES"),
        ("ls", {"path": "."}, "", "The workspace is empty."),
        ("exec", {"command": "date"}, "Sun Nov 22", "The tool finished: Sun Nov 22"),
    ],
)
def test_after_a_tool_it_reports_what_the_tool_did(
    name: str, arguments: dict[str, Any], result: str, expected: str
) -> None:
    # Given / When
    reply = decide(request(*after_tool(name, arguments, result, "do it")))

    # Then
    assert reply.text == f"(offline model) {expected}"


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
def test_bad_bodies_get_400(client: httpx.Client, body: bytes) -> None:
    # Given / When
    response = client.post("/chat/completions", content=body, headers={"Content-Type": "application/json"})

    # Then
    assert response.status_code == 400


def test_unknown_paths_get_404(client: httpx.Client) -> None:
    # Given / When / Then
    assert client.get("/nothing").status_code == 404
    assert client.post("/messages", json={}).status_code == 404


def test_runs_as_a_module_and_prints_its_url() -> None:
    # Given the module started the way the local stack starts it
    with subprocess.Popen(
        [sys.executable, "-m", "local.offline_model", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            # When it has printed its address
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("listening on http://127.0.0.1:")
            url = line.removeprefix("listening on ")

            # Then it answers there, and exits cleanly on SIGTERM
            response = httpx.get(f"{url}/v1/models", timeout=30)
            assert response.json()["data"][0]["id"] == "offline-model"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
