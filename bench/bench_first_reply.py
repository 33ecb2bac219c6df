"""Message → first streamed text through the local stack (`python -m local up --model offline`), cold and
with wake on intent.

(a) cold: from an idle agent, the message is sent → its first `stream_chunk`;
(b) intent: the chat opens (a `warm` frame), the message is sent INTENT_DELAY seconds later (the time it
    takes to type it) → its first `stream_chunk`.
Rounds alternate (a) and (b) so both see the same machine; between rounds the agent is stopped and the
stack waits until it is idle. Each start's bridge phases come from the bridge's own "bridge ready" log
line. Goals (issue 15): cold ≤ 8 s, intent ≤ 3 s. Starts its own stack on free loopback ports in a
temporary state dir and stops it with SIGINT. Prints figures; never fails on time.

    .venv/bin/python bench/bench_first_reply.py      # BENCH_ROUNDS=3 BENCH_INTENT_DELAY=5
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

import websockets
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.bench_local_stack import PROMPT, Stack, bridge_phases  # noqa: E402
from tests.contract.conftest import require_runtime  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
INTENT_DELAY = float(os.environ.get("BENCH_INTENT_DELAY", "5"))
COLD_GOAL, INTENT_GOAL = 8.0, 3.0


async def _drain(ws: ClientConnection) -> None:
    """Drop frames left from the previous round (the idle status after a stop, …)."""
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(ws.recv(), 0.05)


async def _first_chunk(ws: ClientConnection, warm_first: bool) -> tuple[float, str]:
    """Maybe `warm` and wait INTENT_DELAY; send PROMPT; (seconds to its first chunk, what warm did)."""
    await _drain(ws)
    wake = "-"
    if warm_first:
        await ws.send(json.dumps({"action": "warm"}))
        deadline = time.monotonic() + INTENT_DELAY
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                frame = json.loads(await asyncio.wait_for(ws.recv(), left))
                wake = frame.get("wake", wake)
    body = {"action": "sendMessage", "message": PROMPT, "clientMessageId": uuid.uuid4().hex}
    sent = time.time()
    await ws.send(json.dumps(body))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 300))
        if frame["type"] == "error":
            raise RuntimeError(f"error frame: {frame}")
        if frame["type"] == "stream_chunk":
            return time.time() - sent, wake


async def _round(stack: Stack, ws: ClientConnection, warm_first: bool) -> tuple[float, dict[str, float], str]:
    seconds, wake = await _first_chunk(ws, warm_first)
    task = stack.running_task()
    if task is None:
        raise RuntimeError("no task is running after the reply")
    phases, _ = await bridge_phases(Path(task["log"]))
    await stack.stop_agent()
    return seconds, phases, wake


def _report(name: str, runs: list[tuple[float, dict[str, float], str]], goal: float) -> float:
    times = [t for t, _, _ in runs]
    print(
        f"  {name}: " + ", ".join(f"{t:.2f}" for t in times) + f" s → median {median(times):.2f} s, "
        f"max {max(times):.2f} s (goal ≤ {goal:g} s)"
    )
    phases = sorted({p for _, ps, _ in runs for p in ps})
    medians = {p: median(ps.get(p, 0.0) for _, ps, _ in runs) for p in phases}
    print("    bridge phases, median s: " + ", ".join(f"{p} {s:.2f}" for p, s in medians.items()))
    wakes = [w for _, _, w in runs if w != "-"]
    if wakes:
        print(f"    what the warm frames did: {', '.join(wakes)}")
    return median(times)


async def main() -> None:
    require_runtime()
    print(
        f"first reply through the local stack (bench/bench_first_reply.py): offline model, {os.cpu_count()} "
        f"CPUs, load {os.getloadavg()[0]:.1f}, {ROUNDS} rounds, message {INTENT_DELAY:g} s after the warm"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-first-reply-"))
    stack = Stack(work)
    cold: list[tuple[float, dict[str, float], str]] = []
    intent: list[tuple[float, dict[str, float], str]] = []
    try:
        await stack.start()
        async with websockets.connect(f"{stack.ep['webSocketUrl']}?token={stack.token}") as ws:
            for n in range(ROUNDS):
                # Alternate which goes first, so a trend in the machine's load hits both alike.
                for warm_first in (n % 2 == 1, n % 2 == 0):
                    (intent if warm_first else cold).append(await _round(stack, ws, warm_first))
    finally:
        await stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    cold_median = _report("(a) cold: message → first stream_chunk", cold, COLD_GOAL)
    intent_median = _report(
        f"(b) intent: warm, message {INTENT_DELAY:g} s later → first stream_chunk", intent, INTENT_GOAL
    )
    saved = cold_median - intent_median
    print(
        f"  wake on intent saves {saved:.2f} s of the median ({saved / cold_median:.0%}); the rest of (b) is "
        f"the start still under way after {INTENT_DELAY:g} s plus the first run"
    )
    print(f"  (load average {os.getloadavg()[0]:.1f} at the end; other work on this machine skews the times)")


if __name__ == "__main__":
    asyncio.run(main())
