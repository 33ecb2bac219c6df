"""The programs the deploy script runs (the SAM CLI, a container builder), behind one small interface.

The script never runs a shell: every command is an argument list, and whatever is secret (a registry
password) goes to the program's stdin, never into the list, which `ps` shows to every user. The tests
replace `CommandRunner` with a recorder that checks each list and plays the program's part.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

OUTPUT_TAIL_LINES = 40
"""Lines of a failed command's output kept for the error message (the rest was shown as it ran)."""


@dataclass(frozen=True)
class Command:
    """A program to run: its arguments, and what goes to its stdin (the only way a secret may reach it)."""

    argv: Sequence[str]
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables set on top of this process's environment."""
    show: bool = True
    """Whether its output is shown (indented) as it runs; a probe's is not."""


@dataclass(frozen=True)
class Completed:
    """How a command ended: its exit code and the last lines it printed."""

    code: int
    output: str


class Runner(Protocol):
    """What runs commands for the deploy script (a subprocess here, a recorder in the tests)."""

    def which(self, program: str) -> str | None:
        """The program's path on PATH, None when it is not installed."""
        ...

    def run(self, command: Command) -> Completed:
        """Run the command to completion."""
        ...


class CommandRunner:
    """Runs programs as subprocesses in the repository, their output streamed to `out` as it comes."""

    def __init__(self, cwd: Path, out: TextIO) -> None:
        self.cwd = cwd
        self.out = out

    def which(self, program: str) -> str | None:
        """The program's path on PATH (or the path itself when it is one and executable)."""
        if os.sep in program:
            return program if os.access(program, os.X_OK) else None
        return shutil.which(program)

    def run(self, command: Command) -> Completed:
        """Run the command; its output is shown indented (unless a probe) and its tail kept."""
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        try:
            process = subprocess.Popen(
                command.argv,
                cwd=self.cwd,
                env={**os.environ, **command.env},
                stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            return Completed(127, f"{command.argv[0]}: {exc.strerror or type(exc).__name__}")
        if command.stdin is not None and process.stdin is not None:
            with process.stdin:
                process.stdin.write(command.stdin)
        if process.stdout is not None:
            for line in process.stdout:
                tail.append(line.rstrip("\n"))
                if command.show:
                    print(f"    {line.rstrip()}", file=self.out, flush=True)
        return Completed(process.wait(), "\n".join(tail))
