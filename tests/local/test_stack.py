"""Pieces of `python -m local up` that decide what the person running `make dev` gets, or is told."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
from pathlib import Path

import pytest

from local.console import Console
from local.events import schedule_seconds
from local.stack import Options, StackError, bind, choose_model, run
from local.state_directory import StateDirectory, running_stack
from local.template import TemplateError


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(5 minutes)", 300),
        ("rate(1 minute)", 60),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        (" rate(10 minutes) ", 600),
    ],
)
def test_a_rate_schedule_runs_every_so_many_seconds(expression: str, seconds: int) -> None:
    # Given an EventBridge rate expression
    # When the local stack reads it
    # Then it runs the function at that interval
    assert schedule_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["cron(0/5 * * * ? *)", "rate(5 fortnights)", "rate(-1 minutes)", ""])
def test_a_schedule_the_local_stack_cannot_run_is_a_template_error(expression: str) -> None:
    # Given a schedule that is not a rate() the stack understands
    # When it is read
    # Then the start fails saying what is supported, rather than never running the function
    with pytest.raises(TemplateError, match="rate"):
        schedule_seconds(expression)


def test_the_offline_model_is_used_without_an_api_key() -> None:
    # Given no provider key in the environment
    # When the model is chosen
    model = choose_model(Options(), {"HOME": "/home/me", "ANTHROPIC_API_KEY": "  "})

    # Then the built-in offline model, and the banner says how to get a real one
    assert model.provider == "offline"
    assert model.secret is None
    assert "ANTHROPIC_API_KEY" in model.description


def test_an_anthropic_key_selects_anthropic_and_is_stored_as_its_secret() -> None:
    # Given both keys (Anthropic wins) with stray whitespace
    environ = {"ANTHROPIC_API_KEY": " sk-ant-123 \n", "OPENAI_API_KEY": "sk-openai"}

    # When the model is chosen
    model = choose_model(Options(), environ)

    # Then Anthropic, its key trimmed, stored under the name the bridge reads
    assert model.provider == "anthropic"
    assert model.secret == ("anthropic-api-key", "sk-ant-123")
    assert "sk-ant" not in model.description


def test_an_openai_key_selects_openai() -> None:
    # Given only an OpenAI key
    # When the model is chosen
    model = choose_model(Options(), {"OPENAI_API_KEY": "sk-openai"})

    # Then OpenAI
    assert model.provider == "openai"
    assert model.secret == ("openai-api-key", "sk-openai")


def test_model_offline_wins_over_any_key() -> None:
    # Given a key but `--model offline`
    # When the model is chosen
    model = choose_model(Options(model="offline"), {"ANTHROPIC_API_KEY": "sk-ant-123"})

    # Then offline, and the key goes nowhere
    assert model.provider == "offline"
    assert model.secret is None


def test_binding_a_taken_port_names_the_port_and_the_fix() -> None:
    # Given a port something else listens on
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]

        # When the stack tries to listen on it
        with pytest.raises(StackError) as refused:
            bind(port, "web")

    # Then the message names the port and the service, and says how to move the stack
    message = str(refused.value)
    assert f"port {port} (web)" in message
    assert "PORT_BASE" in message


def test_binding_a_free_port_listens_on_loopback_only() -> None:
    # Given any free port
    # When the stack binds it
    sock = bind(0, "http")
    try:
        # Then it listens on 127.0.0.1, never on every interface
        host, port = sock.getsockname()
        assert host == "127.0.0.1"
        assert port > 0
    finally:
        sock.close()


def test_a_stack_refused_for_a_state_dir_in_use_leaves_the_running_stacks_files_alone(tmp_path: Path) -> None:
    # Given a state directory a running stack holds, with its endpoints.json written
    running = StateDirectory(tmp_path / ".local")
    assert running.take()
    running.write_endpoints({"pid": os.getpid(), "webUrl": "http://127.0.0.1:8080"})
    published = running.endpoints_path.read_text()
    console = io.StringIO()

    # When a second `make dev` starts on the same state directory
    try:
        code = asyncio.run(run(Options(state_dir=running.path, port_base=0), Console(console)))

        # Then it is refused, saying why, and the running stack is still found through its endpoints.json
        assert code == 1
        assert "already running" in console.getvalue()
        # And it does not claim to have stopped anything or kept a state that is not its own
        assert "stopped" not in console.getvalue() and "state is kept" not in console.getvalue()
        assert running.endpoints_path.read_text() == published
        assert running_stack(running.path) == json.loads(published)
    finally:
        running.release()


def test_a_stack_that_stops_withdraws_its_endpoints_and_frees_the_state_dir(tmp_path: Path) -> None:
    # Given a stack holding its state directory, endpoints published
    first = StateDirectory(tmp_path / ".local")
    assert first.take()
    first.write_endpoints({"pid": os.getpid()})

    # When it stops
    first.release()

    # Then nothing is found running there, and the next stack can take the directory
    assert not first.endpoints_path.exists()
    assert running_stack(first.path) is None
    second = StateDirectory(first.path)
    assert second.take()
    second.release()
