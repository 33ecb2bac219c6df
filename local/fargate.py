"""What Fargate does for the ECS stand-in: run each task's container, stop it, clean up.

A task's container is the bridge image's entrypoint, run in a session of its own (OpenClaw, its child,
goes with it) with fresh storage, deleted when the task stops, like Fargate's ephemeral storage: anything
that should outlive a task must be in S3. By default the entrypoint runs as a host process in a fresh
working directory (`HostProcess`); `python -m local up --bridge-image NAME` runs it inside the built image
with `buildah run` instead (local/image_containers.py). A stop sends SIGTERM to the entrypoint and, after the
container's `StopTimeout`, SIGKILL to everything the task started. The task metadata endpoint
(`ECS_CONTAINER_METADATA_URI_V4`) is what the container reads about itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO, Any, Protocol

from local.ecs_task import Task
from local.template import TemplateError

log = logging.getLogger("local.fargate")


def image_entrypoint(dockerfile: Path) -> list[str]:
    """The bridge image's ENTRYPOINT (exec form), with `python3` meaning this interpreter."""
    text = dockerfile.read_text(encoding="utf-8")
    found = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, flags=re.MULTILINE)
    if not found:
        raise TemplateError(f"{dockerfile} has no exec-form ENTRYPOINT")
    command = json.loads(found[-1])
    if command and re.fullmatch(r"python3?(\.\d+)?", command[0]):
        command[0] = sys.executable
    return [str(part) for part in command]


class ContainerRuntime(Protocol):
    """How a task's container runs: its entrypoint as a host process, or inside the image (buildah)."""

    async def start(
        self, task: Task, environment: Mapping[str, str], output: IO[bytes]
    ) -> asyncio.subprocess.Process:
        """Start the container's entrypoint with the task's environment, its output to `output`."""
        ...

    def entry_pid(self, task: Task) -> int | None:
        """The entrypoint's process (what a stop's SIGTERM goes to), None when it is not there (yet)."""
        ...

    async def remove(self, task: Task) -> None:
        """The task has ended: delete its container and whatever of it is left."""
        ...

    def discard(self, task_id: str) -> None:
        """Delete what is left of a task a killed local stack never saw end."""
        ...


async def start_in_session(
    command: list[str], task: Task, output: IO[bytes], env: Mapping[str, str] | None = None
) -> asyncio.subprocess.Process:
    """A task's process: in the task's directory, in a session of its own, its output to `output`."""
    return await asyncio.create_subprocess_exec(
        *command,
        env=dict(env) if env is not None else None,
        cwd=str(task.directory),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=output,
        stderr=output,
        start_new_session=True,
    )


class HostProcess:
    """The image's entrypoint as a process of this machine, with the image's ENV given by
    `image_environment` (this machine's paths in place of the image's)."""

    def __init__(
        self, command: list[str], image_environment: Callable[[Task], Mapping[str, str]] | None = None
    ) -> None:
        self.command = command
        self.image_environment = image_environment

    async def start(
        self, task: Task, environment: Mapping[str, str], output: IO[bytes]
    ) -> asyncio.subprocess.Process:
        """`command` in the task's directory, in a session of its own."""
        image = self.image_environment(task) if self.image_environment else {}
        return await start_in_session(self.command, task, output, env={**environment, **image})

    def entry_pid(self, task: Task) -> int | None:
        """The process itself."""
        return task.pid

    async def remove(self, task: Task) -> None:
        """Nothing beyond the task's directory, which Fargate deletes."""

    def discard(self, task_id: str) -> None:
        """Likewise (the stack deletes a leftover task's directory)."""


class Fargate:
    """Runs tasks' containers, stops them, and reports each end once the container's process is gone."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        *,
        on_stopped: Callable[[Task], Awaitable[None]],
        say: Callable[[str], None],
        on_changed: Callable[[Task], object] = lambda task: None,
    ) -> None:
        self.runtime = runtime
        self.on_stopped = on_stopped
        self.on_changed = on_changed
        """Told of each status change before STOPPED (ECS sends each one as a task state change event)."""
        self.say = say
        self._watchers: set[asyncio.Task[None]] = set()

    async def launch(self, task: Task, environment: Mapping[str, str]) -> None:
        """Start the task's container; the task is RUNNING once its process is. Each step is told as ECS
        tells it: PROVISIONING, PENDING once the image pull begins (`pullStartedAt`), again when it is done
        (`pullStoppedAt`), RUNNING. Here the image is on this machine already (the host's files, or the
        unpacked image under --bridge-image): what stands for the pull is the task's storage being made."""
        self.on_changed(task)
        task.last_status = "PENDING"
        task.pull_started_at = time.time()
        self.on_changed(task)
        task.directory.mkdir(parents=True, exist_ok=True)
        task.log_path.parent.mkdir(parents=True, exist_ok=True)
        task.pull_stopped_at = time.time()
        self.on_changed(task)
        with task.log_path.open("ab") as out:
            process = await self.runtime.start(task, environment, out)
        task.process = process
        task.started_at = time.time()
        task.last_status = "RUNNING"
        self.on_changed(task)
        user = task.user_id() or "?"
        self.say(
            f"agent task {task.task_id[:8]} started for user {user[:8]} on {task.capacity_provider} "
            f"(pid {task.pid})"
        )
        self._follow(self._watch(task, process))

    def stop(self, task: Task, timeout: float) -> None:
        """SIGTERM the container's entrypoint; SIGKILL the task if it is still there after `timeout` s."""
        process = task.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.runtime.entry_pid(task) or process.pid, signal.SIGTERM)
        self._follow(self._kill_after(task, process, timeout))

    async def settled(self) -> None:
        """Wait until every stopped process has been reported and every pending kill is done."""
        if self._watchers:
            await asyncio.gather(*list(self._watchers), return_exceptions=True)

    def _follow(self, work: Awaitable[None]) -> None:
        watcher = asyncio.ensure_future(work)
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _kill_after(self, task: Task, process: asyncio.subprocess.Process, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task.ended.wait(), timeout=seconds)
            return
        log.warning("task %s ignored SIGTERM for %s s; killing it", task.task_id, seconds)
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()

    async def _watch(self, task: Task, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        # The container is gone: so is everything it started (OpenClaw runs in its own process group).
        kill_leftovers(task.directory, process.pid)
        await self.runtime.remove(task)
        task.exited(returncode, time.time())
        shutil.rmtree(task.directory, ignore_errors=True)
        for reservation in task.ports:
            reservation.release()
        self.say(f"agent task {task.task_id[:8]} stopped (exit {task.exit_code}: {task.stopped_reason})")
        await self.on_stopped(task)


def kill_leftovers(task_directory: Path, pid: int | None = None) -> None:
    """SIGKILL every process still working in a task's directory (Linux /proc), and the task's group."""
    own = os.getuid()
    directory = str(task_directory.resolve())
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != own:
                    continue
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == directory or cwd.startswith(directory + os.sep):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(int(entry.name), signal.SIGKILL)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def task_metadata(task: Task) -> dict[str, Any]:
    """`GET {ECS_CONTAINER_METADATA_URI_V4}/task`: the task the container runs in."""
    return {
        "Cluster": task.cluster_arn,
        "TaskARN": task.arn,
        "Family": task.family,
        "Revision": "1",
        "DesiredStatus": task.desired_status,
        "KnownStatus": task.last_status,
        "LaunchType": "FARGATE",
        "AvailabilityZone": task.describe()["availabilityZone"],
        "Containers": [container_metadata(task)],
    }


def container_metadata(task: Task) -> dict[str, Any]:
    """`GET {ECS_CONTAINER_METADATA_URI_V4}`: the container itself."""
    return {
        "DockerId": task.container_id.replace("-", ""),
        "Name": task.container_name,
        "Image": "serverless-openclaw-bridge:local",
        "DesiredStatus": task.desired_status,
        "KnownStatus": task.last_status,
        "Type": "NORMAL",
        "ContainerARN": task.container_arn,
    }
