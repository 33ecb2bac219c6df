"""The bridge image end to end: `bridge/Dockerfile` built with buildah on stand-in bases (local/image.py),
and every agent task of the local stack run inside it (`python -m local up --bridge-image`): the image's
own ENTRYPOINT, its user and ENV, under `buildah run`, against the loopback stand-ins.

`make image-test` runs this alone. It needs buildah and debootstrap (root); without buildah it is skipped
on a developer's machine, never in CI (CI=true), where a missing builder fails it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from local.buildah import ImageError, buildah_available
from local.image import ensure_image
from tests.e2e.harness import ChatClient, LocalStackProcess, until

IN_CI = os.environ.get("CI") == "true"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.image,
    # A first build takes minutes (debootstrap, npm, pip); each task's container is a copy of the image.
    pytest.mark.timeout(2400),
    pytest.mark.skipif(
        not buildah_available() and not IN_CI,
        reason="buildah is not installed (`make image-test` installs it: apt-get install buildah "
        "debootstrap)",
    ),
]

StartStack = Callable[..., LocalStackProcess]
IMAGE_UID = 10001
"""The image's USER (bridge/Dockerfile), which the task definition also names."""


@pytest.fixture(scope="module")
def bridge_image() -> str:
    """The bridge image, built unless the cache holds one of the same inputs."""
    try:
        return ensure_image()
    except ImageError as exc:
        pytest.fail(f"the bridge image cannot be built: {exc}", pytrace=False)


def _proc(pid: int | str, name: str) -> str:
    return (Path("/proc") / str(pid) / name).read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _bridges_in_containers() -> list[tuple[str, int]]:
    """(root directory, uid) of every `python3 -m bridge` whose root is not this machine's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if _proc(entry.name, "cmdline").split()[1:] != ["-m", "bridge"]:
                continue
            root = os.readlink(entry / "root")
            uids = next(line for line in _proc(entry.name, "status").splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if root != "/":
            found.append((root, int(uids.split()[1])))
    return found


def _bridge_inside_the_image(stack: LocalStackProcess) -> list[tuple[str, int]]:
    """The running task's bridge when the task is a `buildah run` (AssertionError when it is not)."""
    for task in stack.running_tasks():
        command = _proc(task["pid"], "cmdline").split()
        if "buildah" not in command or "run" not in command:
            raise AssertionError(f"the task runs {command}, not `buildah run`")
    return _bridges_in_containers()


async def test_the_image_answers_and_its_workspace_survives_a_stop_of_the_task_and_a_restart(
    start_stack: StartStack, bridge_image: str
) -> None:
    # Given the local stack runs every agent task inside the built image
    stack = start_stack("--bridge-image", bridge_image)
    user_id, token = stack.endpoints["userId"], stack.login()
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # When the user asks the agent to write a file
        created = await tab.reply_to(
            await tab.send_message("create file image.md with the text built and run")
        )

        # Then the reply arrives from a bridge inside the image, as the image's user
        assert "Created image.md" in created["content"]
        inside = await until(
            lambda: _bridge_inside_the_image(stack), 30, "the bridge inside the image", stack
        )
        assert [uid for _, uid in inside] == [IMAGE_UID], inside
        conversation = created["conversationId"]
        await until(
            lambda: stack.workspace_file(user_id, "image.md") == b"built and run", 60, "image.md in S3", stack
        )

        # When the user stops the agent
        stopped = stack.api("POST", "/api/agent/stop", token)
        assert stopped.status_code == 202, stopped.text
        await until(
            lambda: not stack.running_tasks() and stack.task_state(user_id).get("status") == "Idle",
            180,
            "the explicit stop",
            stack,
        )
        # Then the image's entrypoint got the SIGTERM and stopped cleanly
        first = stack.tasks()[0]
        assert first["stopCode"] == "UserInitiated" and first["exitCode"] == 0, first

        # And a new task, in a fresh container, restored the file
        shown = await tab.reply_to(await tab.send_message("show image.md", conversation))
        assert "built and run" in shown["content"]

    # When the whole stack is stopped (the agent still running) and started again
    assert stack.stop() == 0
    assert "final backup" in stack.console()
    stack.start()

    # Then the agent, started afresh inside the image, still finds its file
    async with ChatClient(stack.endpoints["webSocketUrl"], stack.login()) as tab:
        again = await tab.reply_to(await tab.send_message("show image.md", conversation))
        assert "built and run" in again["content"]
    assert len({t["taskId"] for t in stack.tasks()}) == 1  # the restarted stack's own task
