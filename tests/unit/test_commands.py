"""scripts/commands.py: programs run with their output shown as it comes, secrets only on stdin."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from scripts.commands import Command, CommandRunner


def test_stdin_reaches_the_program_and_its_output_is_shown_indented_and_kept(tmp_path: Path) -> None:
    # Given a program that echoes what it reads on stdin, and an environment variable
    out = io.StringIO()
    runner = CommandRunner(tmp_path, out)
    program = "import os, sys; print('read', sys.stdin.read().strip(), os.environ['EXTRA'], os.getcwd())"

    # When it runs with a value on stdin
    done = runner.run(Command((sys.executable, "-c", program), stdin="s3cret\n", env={"EXTRA": "x"}))

    # Then it read it, its output is shown indented as it ran, and its tail is kept for an error message
    assert done.code == 0
    assert done.output == f"read s3cret x {tmp_path}"
    assert out.getvalue() == f"    read s3cret x {tmp_path}\n"


def test_a_probe_is_quiet_and_a_failure_keeps_its_exit_code(tmp_path: Path) -> None:
    # Given a program that prints and fails
    out = io.StringIO()
    runner = CommandRunner(tmp_path, out)

    # When it runs as a probe
    done = runner.run(Command((sys.executable, "-c", "print('no'); raise SystemExit(3)"), show=False))

    # Then nothing was shown, and the code and output are returned
    assert (done.code, done.output, out.getvalue()) == (3, "no", "")


def test_a_missing_program_is_exit_127_not_an_exception(tmp_path: Path) -> None:
    # Given a program that does not exist
    runner = CommandRunner(tmp_path, io.StringIO())

    # When it is run, and looked up
    done = runner.run(Command((str(tmp_path / "no-such-builder"), "build")))

    # Then it reads like a shell's "not found"
    assert done.code == 127
    assert "no-such-builder" in done.output
    assert runner.which(str(tmp_path / "no-such-builder")) is None
    assert runner.which(sys.executable) == sys.executable
