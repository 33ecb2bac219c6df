"""Who am I: the task ARN from the ECS task metadata endpoint (v4); the local ECS stand-in serves it too."""

from __future__ import annotations

import asyncio
import json
import urllib.request


class MetadataError(RuntimeError):
    """The metadata endpoint did not tell us our task ARN."""


def _fetch(url: str, timeout: float) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data = json.loads(resp.read())
    if not isinstance(data, dict):
        raise MetadataError("task metadata is not a JSON object")
    return data


async def task_arn(metadata_uri: str, *, attempts: int = 5, timeout: float = 2.0) -> str:
    """The running task's ARN (`GET {ECS_CONTAINER_METADATA_URI_V4}/task` → TaskARN), retried briefly."""
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            data = await asyncio.to_thread(_fetch, f"{metadata_uri}/task", timeout)
            arn = data.get("TaskARN")
            if isinstance(arn, str) and arn:
                return arn
            raise MetadataError("task metadata has no TaskARN")
        except (OSError, ValueError, MetadataError) as exc:
            last = exc
            await asyncio.sleep(0.2 * 2**attempt)
    raise MetadataError(f"task metadata unavailable: {last}")
