"""The bridge image: its size (uncompressed, and gzip-compressed as a registry would store it) and the
bridge's start inside it against the same start as a host process, measured in the same run.

Start = from launching the container (`buildah from` + `buildah run` of the image's ENTRYPOINT, or the
process) to the bridge's /health answering healthy (OpenClaw up, the agent connection open), with an
empty workspace, against moto's server and the offline model; the median of BENCH_IMAGE_STARTS (3) each.
Builds the image first unless cached (`make image`); needs buildah, root and `make openclaw`. Prints
figures; never fails on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]
os.environ.update({"LOG_LEVEL": "WARNING", "AWS_DEFAULT_REGION": "us-east-1"})

from local.buildah import Buildah, ImageError, cache_folder  # noqa: E402
from local.ecs_task import Task  # noqa: E402
from local.image import ensure_image  # noqa: E402
from local.image_containers import ImageContainers  # noqa: E402
from local.offline_model import serve  # noqa: E402
from local.runtime import runtime  # noqa: E402
from serverless_openclaw.config import Tables  # noqa: E402
from tests.contract.harness import (  # noqa: E402
    AgentSocket,
    ManagementServer,
    MetadataServer,
    MotoServer,
    bridge_environment,
    start_bridge,
    start_task,
)

USER = "bench-user"
STARTS = int(os.environ.get("BENCH_IMAGE_STARTS", "3"))
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/bench/image"
HEALTH_TIMEOUT = 300.0


def _mb(size: float) -> str:
    return f"{size / 1e6:7.1f} MB"


def _layer_sizes(manifest: dict[str, Any]) -> list[int]:
    return [int(layer["size"]) for layer in manifest["layers"]]


def image_size(buildah: Buildah, image: str, work: Path) -> None:
    """Uncompressed (the stored layer tars) and gzip (pushed to an OCI layout on disk, as a registry
    would receive it) sizes."""
    stored = json.loads(buildah.run("inspect", "--type", "image", image, quiet=True))
    plain = _layer_sizes(json.loads(stored["Manifest"]))
    layout = work / "oci-gzip"
    started = time.monotonic()
    gzip = ["--disable-compression=false", "--compression-format", "gzip"]
    buildah.run("push", "--quiet", *gzip, image, f"oci:{layout}", quiet=True)
    gzip_seconds = time.monotonic() - started
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    packed = _layer_sizes(json.loads((layout / "blobs" / "sha256" / digest).read_text()))
    print(f"  image {image} ({len(plain)} layers: bench/bench_image_size.py shows each)")
    print(f"    uncompressed (layer tars)  {_mb(sum(plain))}   ({', '.join(_mb(n).strip() for n in plain)})")
    print(f"    gzip (as a registry stores it) {_mb(sum(packed))}   ({gzip_seconds:.0f} s to compress)")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(json.loads(response.read()).get("healthy"))
    except (OSError, urllib.error.URLError, ValueError):
        return False


async def _until_healthy(port: int, process: asyncio.subprocess.Process, log: Path) -> float:
    started = time.monotonic()
    while not await asyncio.to_thread(_healthy, port):
        if process.returncode is not None:
            raise RuntimeError(f"the bridge exited with {process.returncode}; see {log}")
        if time.monotonic() - started > HEALTH_TIMEOUT:
            raise RuntimeError(f"the bridge was not healthy in {HEALTH_TIMEOUT:.0f} s; see {log}")
        await asyncio.sleep(0.1)
    return time.monotonic()


class Stand:
    """moto, the agent's WebSocket, the management API and the metadata endpoint: what a task talks to."""

    def __init__(self, moto: MotoServer, model_url: str, work: Path) -> None:
        self.moto, self.model_url, self.work = moto, model_url, work
        self.tables = Tables.from_env(moto.tables)
        self.agent, self.management, self.metadata = (
            AgentSocket(),
            ManagementServer(),
            MetadataServer(TASK_ARN),
        )

    async def start(self) -> None:
        """Start the servers."""
        self.management.thread.start()
        self.metadata.thread.start()
        self.websocket_url = await self.agent.start()

    async def stop(self) -> None:
        """Stop them."""
        await self.agent.stop()
        self.management.shutdown()
        self.metadata.shutdown()

    def environment(self, run: int) -> dict[str, str]:
        """What ECS would give the container: only the task's own variables (the image has the rest)."""
        start_task(self.tables, USER, TASK_ARN)
        with mock.patch.dict(os.environ, {}, clear=True):
            return bridge_environment(
                moto=self.moto,
                user_id=USER,
                websocket_url=self.websocket_url,
                management_endpoint=self.management.endpoint,
                metadata_uri=self.metadata.uri,
                model_url=self.model_url,
                state_root=self.work / f"host-{run}",
            )


async def host_start(stand: Stand, run: int) -> float:
    """`python -m bridge` as a process: seconds to healthy."""
    env = {**os.environ, **stand.environment(run)}
    log = stand.work / f"host-{run}.log"
    started = time.monotonic()
    process = await start_bridge(env, log)
    healthy = await _until_healthy(int(env["BRIDGE_PORT"]), process, log)
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), 120)
    return healthy - started


async def image_start(stand: Stand, containers: ImageContainers, run: int) -> float:
    """The image's ENTRYPOINT in a fresh container: seconds to healthy."""
    env = stand.environment(run)
    for name in ("PYTHONPATH", "STATE_ROOT", "OPENCLAW_NODE", "OPENCLAW_ENTRY"):
        env.pop(name)  # the image's own ENV says where these are inside it
    task = _task(stand.work, run)
    started = time.monotonic()
    with task.log_path.open("ab") as out:
        process = await containers.start(task, env, out)
    task.process = process
    try:
        healthy = await _until_healthy(int(env["BRIDGE_PORT"]), process, task.log_path)
        os.kill(containers.entry_pid(task) or process.pid, signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await containers.remove(task)
    return healthy - started


def _task(work: Path, run: int) -> Task:
    task_id = f"bench{run}{os.getpid()}"
    directory = work / task_id
    directory.mkdir(parents=True)
    return Task(
        task_id=task_id,
        arn=TASK_ARN,
        cluster_arn="arn:aws:ecs:us-east-1:123456789012:cluster/bench",
        task_definition_arn="arn:aws:ecs:us-east-1:123456789012:task-definition/bench:1",
        family="bench",
        container_name="bridge",
        capacity_provider="FARGATE",
        started_by=None,
        tags=[],
        overrides={},
        directory=directory,
        log_path=work / f"{task_id}.log",
        created_at=time.time(),
    )


async def starts(image: str, buildah: Buildah, work: Path) -> None:
    """The bridge's start as a process and inside the image, alternating, same stand-ins."""
    model, _ = serve(0)
    moto = MotoServer()
    moto.start()
    os.environ.update({"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    stand = Stand(moto, model.url, work)
    await stand.start()
    containers = ImageContainers(buildah, image)
    host: list[float] = []
    inside: list[float] = []
    try:
        for run in range(STARTS):
            host.append(await host_start(stand, run))
            inside.append(await image_start(stand, containers, run))
    finally:
        await stand.stop()
        moto.stop()
    host_median, inside_median = statistics.median(host), statistics.median(inside)
    print(f"  bridge start to /health healthy (median of {STARTS}, empty workspace):")
    print(f"    host process        {host_median:6.1f} s   (max {max(host):.1f} s)")
    print(f"    inside the image    {inside_median:6.1f} s   (max {max(inside):.1f} s)")
    print(f"    ratio image/process {inside_median / host_median:6.2f}")


def main() -> int:
    """Print the figures."""
    if not runtime().installed:
        print("  the pinned OpenClaw runtime is not installed: run `make openclaw` first")
        return 1
    started = time.monotonic()
    try:
        image = ensure_image(say=lambda line: print(f"  {line}"))
    except ImageError as exc:
        print(f"  cannot build the image: {exc}")
        return 1
    print(f"  image ready in {time.monotonic() - started:.0f} s (cached when nothing changed)")
    buildah = Buildah(cache_folder())
    with tempfile.TemporaryDirectory(prefix="bench-image-", dir=cache_folder()) as tmp:
        image_size(buildah, image, Path(tmp))
        asyncio.run(starts(image, buildah, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
