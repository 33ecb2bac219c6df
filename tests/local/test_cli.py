"""`python -m local reset | invoke | up` when nothing is running: what the person is told, what is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import local.__main__ as cli

EVENTS = Path(__file__).resolve().parents[2] / "events"


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def state_dir_with_files(tmp_path: Path) -> Path:
    state = tmp_path / ".local"
    (state / "logs").mkdir(parents=True)
    (state / "aws-state.pickle").write_bytes(b"state")
    (state / "cognito-users.json").write_text("{}")
    return state


def test_reset_deletes_the_state_of_a_stopped_stack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the state of a stack that is not running (no endpoints.json)
    state = state_dir_with_files(tmp_path)

    # When `make dev-reset` runs
    code = cli.main(["reset", "--state-dir", str(state)])

    # Then the state is gone and the person is told what that means
    assert code == 0
    assert not state.exists()
    assert "starts afresh" in capsys.readouterr().out


def test_reset_deletes_the_state_left_by_a_stack_that_died(tmp_path: Path) -> None:
    # Given endpoints.json naming a process that is no longer alive (the stack was killed)
    state = state_dir_with_files(tmp_path)
    (state / "endpoints.json").write_text(json.dumps({"pid": dead_pid()}))

    # When reset runs
    # Then it deletes the state
    assert cli.main(["reset", "--state-dir", str(state)]) == 0
    assert not state.exists()


def test_reset_refuses_while_the_stack_is_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given endpoints.json naming a live process (this one stands in for the running stack)
    state = state_dir_with_files(tmp_path)
    (state / "endpoints.json").write_text(json.dumps({"pid": os.getpid()}))

    # When reset runs
    code = cli.main(["reset", "--state-dir", str(state)])

    # Then it refuses, saying why, and every file is still there
    assert code == 1
    assert "running" in capsys.readouterr().err
    assert (state / "aws-state.pickle").read_bytes() == b"state"
    assert (state / "cognito-users.json").exists()


def test_reset_of_nothing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given no state directory
    # When reset runs
    # Then it succeeds and says there was nothing to do
    assert cli.main(["reset", "--state-dir", str(tmp_path / "absent")]) == 0
    assert "nothing to reset" in capsys.readouterr().out


@pytest.mark.parametrize("endpoints", ["absent", "damaged", "dead pid"])
def test_invoke_without_a_running_stack_says_to_run_make_dev(tmp_path: Path, endpoints: str) -> None:
    # Given no running stack: no endpoints.json, a damaged one, or one naming a process that has ended
    state = tmp_path / ".local"
    state.mkdir()
    if endpoints == "damaged":
        (state / "endpoints.json").write_text("{not json")
    elif endpoints == "dead pid":
        (state / "endpoints.json").write_text(json.dumps({"pid": dead_pid()}))
    snapshot = dict(os.environ)

    # When a function is invoked
    with pytest.raises(SystemExit) as stopped:
        cli.main(
            [
                "invoke",
                "WsMessageFunction",
                "-e",
                str(EVENTS / "ws_message_ping.json"),
                "--state-dir",
                str(state),
            ]
        )

    # Then it stops before running anything, telling the person to start the stack
    assert "make dev" in str(stopped.value.code)
    assert "not running" in str(stopped.value.code)
    assert dict(os.environ) == snapshot


def test_invoke_with_an_unreadable_event_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an event file that does not exist, and one that is not JSON
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")

    # When invoke is given them
    missing_code = cli.main(["invoke", "WsMessageFunction", "-e", str(tmp_path / "nope.json")])
    bad_code = cli.main(["invoke", "WsMessageFunction", "-e", str(bad)])

    # Then it exits 2 naming each file
    err = capsys.readouterr().err
    assert (missing_code, bad_code) == (2, 2)
    assert "nope.json" in err
    assert "bad.json is not JSON" in err


@pytest.mark.parametrize("port_base", ["80", "65535", "-1"])
def test_up_refuses_a_port_base_it_cannot_use(
    port_base: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a port base out of range (the stack must not start)
    def must_not_start(options: object) -> int:
        raise AssertionError("the stack started")

    monkeypatch.setattr(cli, "serve_forever", must_not_start)

    # When `up` is asked to use it
    code = cli.main(["up", "--port-base", port_base])

    # Then it exits 2 with the allowed range
    assert code == 2
    assert "between 1024 and 65530" in capsys.readouterr().err


def test_a_malformed_parameter_override_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    # Given `--parameter` without a value assignment
    # When the command line is parsed
    with pytest.raises(SystemExit) as stopped:
        cli.main(["up", "--parameter", "IdleTimeoutMinutes"])

    # Then argparse refuses it, saying what form is expected
    assert stopped.value.code == 2
    assert "expected Name=Value" in capsys.readouterr().err


def test_up_passes_its_options_to_the_stack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a stack runner that records what it is asked to run
    seen: list[cli.Options] = []
    monkeypatch.setattr(cli, "serve_forever", lambda options: seen.append(options) or 0)

    # When `up` is called with every option
    code = cli.main(
        [
            "up",
            "--state-dir",
            str(tmp_path),
            "--port-base",
            "0",
            "--schedule-every",
            "2",
            "--model",
            "offline",
            "--parameter",
            "IdleTimeoutMinutes=1",
            "--gateway-command",
            "/usr/bin/python3",
            "fake.py",
        ]
    )

    # Then the stack gets them as given
    assert code == 0
    [options] = seen
    assert options.state_dir == tmp_path.resolve() and options.port_base == 0
    assert options.schedule_every == 2 and options.model == "offline"
    assert options.parameters == {"IdleTimeoutMinutes": "1"}
    assert options.gateway_command == ("/usr/bin/python3", "fake.py")
