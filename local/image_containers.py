"""The ECS stand-in's containers inside the built bridge image (`python -m local --bridge-image`): one
unpacked copy of the image per image, each task in it under `buildah run` with fresh storage of its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from local.buildah import Buildah, ImageError, run_container
from local.ecs_task import Task
from local.fargate import start_in_session


def image_config(buildah: Buildah, image: str) -> dict[str, object]:
    """The image's OCI config (Entrypoint, Env, User, WorkingDir, …)."""
    inspected = json.loads(buildah.run("inspect", "--type", "image", image, quiet=True) or "{}")
    config = inspected.get("OCIv1", {}).get("config") if isinstance(inspected, dict) else None
    if not isinstance(config, dict):
        raise ImageError(f"`buildah inspect {image}` shows no image config")
    return config


def ensure_container(buildah: Buildah, image: str, say: Callable[[str], None] = print) -> str:
    """The image's run container, created unless there (with vfs a full copy of the image: a minute or
    more, so `make image` does it while the rest of `make test` installs)."""
    name = run_container(image)
    present = subprocess.run(
        buildah.argv("inspect", "--type", "container", "--format", "{{.FromImage}}", name),
        capture_output=True,
        check=False,
    )
    if present.returncode != 0:
        say(f"==> unpacking {image} into the container {name} (once per image)")
        buildah.run("from", "--pull=never", "--quiet", "--name", name, image, quiet=True)
    return name


class ImageContainers:
    """The ECS stand-in's containers inside the bridge image: the image's own ENTRYPOINT, user, ENV and
    working directory under `buildah run`, on the host's network (the stand-ins are on loopback, as a
    task's awsvpc interface reaches AWS).

    Tasks share one unpacked copy of the image (with vfs an unpack copies the whole image, a minute or
    more) and each gets fresh, empty storage, bind-mounted, wherever the image's user can write: its
    working directory, STATE_ROOT, HOME and /tmp (the image's own files are root's). That is Fargate's
    ephemeral storage: a restarted task finds only what it restored from S3. Each task runs in a PID
    namespace of its own (`unshare --pid --kill-child`): when it ends, everything it started ends with
    it, as in a container."""

    def __init__(self, buildah: Buildah, image: str) -> None:
        self.buildah = buildah
        self.image = image
        self.container = ensure_container(buildah, image)
        config = image_config(buildah, image)
        entrypoint, command = config.get("Entrypoint") or [], config.get("Cmd") or []
        if not isinstance(entrypoint, list) or not isinstance(command, list) or not entrypoint + command:
            raise ImageError(f"{image} has no ENTRYPOINT to run")
        # What `docker run` runs: ENTRYPOINT followed by CMD.
        self.entrypoint = [str(part) for part in entrypoint + command]
        self.owner = _numeric_user(str(config.get("User") or "0"), image)
        pairs = config.get("Env") or []
        env = dict(str(pair).partition("=")[::2] for pair in pairs) if isinstance(pairs, list) else {}
        places = [str(config.get("WorkingDir") or ""), env.get("STATE_ROOT", ""), env.get("HOME", ""), "/tmp"]
        self.writable = sorted({place for place in places if place.startswith("/") and place != "/"})

    async def start(
        self, task: Task, environment: Mapping[str, str], output: IO[bytes]
    ) -> asyncio.subprocess.Process:
        """The ENTRYPOINT in the image, with fresh storage of the task's own (the process returned)."""
        volumes = []
        for number, place in enumerate(self.writable):
            folder = task.directory / f"storage-{number}"
            folder.mkdir(parents=True, exist_ok=True)
            os.chown(folder, *self.owner)
            folder.chmod(0o1777 if place == "/tmp" else 0o755)
            volumes.append(f"--volume={folder}:{place}")
        # The values are the task's environment as ECS gives it; the local stack's are loopback URLs and
        # its fixed throwaway credentials, no secret (the bridge reads those from SSM).
        variables = [f"--env={key}={value}" for key, value in environment.items()]
        run = self.buildah.argv("run", "--isolation", "chroot", *volumes, *variables, self.container)
        command = ["unshare", "--pid", "--fork", "--kill-child", *run, "--", *self.entrypoint]
        return await start_in_session(command, task, output)

    def entry_pid(self, task: Task) -> int | None:
        """The ENTRYPOINT's process: the task's descendant running exactly that command (ECS signals the
        container's own process; buildah would not pass a SIGTERM on, it kills its child)."""
        if task.pid is None:
            return None
        children: dict[int, list[int]] = {}
        commands: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            parent = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
            commands[int(entry.name)] = [part for part in argv if part]
        wanted = self.entrypoint
        pending = list(children.get(task.pid, []))
        while pending:
            pid = pending.pop(0)
            argv = commands.get(pid, [])
            if argv and Path(argv[0]).name == Path(wanted[0]).name and argv[1:] == wanted[1:]:
                return pid
            pending += children.get(pid, [])
        return None

    async def remove(self, task: Task) -> None:
        """Nothing: the PID namespace took its processes along, Fargate deletes its storage."""

    def discard(self, task_id: str) -> None:
        """Likewise for a task a killed stack left behind."""


def _numeric_user(user: str, image: str) -> tuple[int, int]:
    """(uid, gid) of an image's USER; ImageError unless numeric (the task definition's is, too)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise ImageError(f"{image} has USER {user}: the local stack needs a numeric uid[:gid]")
    return int(uid), int(gid or uid)
