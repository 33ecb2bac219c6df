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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

OUTPUT_TAIL_LINES = 40
"""Lines of a failed command's output kept for the error message (the rest was shown as it ran)."""


@dataclass(frozen=True)
class Completed:
    """How a command ended: its exit code and the last lines it printed."""

    code: int
    output: str

    @property
    def ok(self) -> bool:
        """Whether it exited 0."""
        return self.code == 0


class Runner(Protocol):
    """What runs commands for the deploy script (a subprocess here, a recorder in the tests)."""

    def which(self, program: str) -> str | None:
        """The program's path on PATH, None when it is not installed."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        show: bool = True,
    ) -> Completed:
        """Run argv (its output shown indented when `show`); stdin is the only way to pass a secret."""
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

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: str | None = None,
        env: Mapping[str, str] | None = None,
        show: bool = True,
    ) -> Completed:
        """Run argv to completion; its output is shown indented (when `show`) and its tail kept."""
        tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
        try:
            process = subprocess.Popen(
                list(argv),
                cwd=self.cwd,
                env={**os.environ, **env} if env is not None else None,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            return Completed(127, f"{argv[0]}: {exc.strerror or type(exc).__name__}")
        if stdin is not None and process.stdin is not None:
            with process.stdin:
                process.stdin.write(stdin)
        if process.stdout is not None:
            for line in process.stdout:
                tail.append(line.rstrip("\n"))
                if show:
                    print(f"    {line.rstrip()}", file=self.out, flush=True)
        return Completed(process.wait(), "\n".join(tail))
