"""Message → first streamed text through the local stack (`python -m local up --model offline`), cold and
with wake on intent.

(a) cold: from an idle agent, the message is sent → its first `stream_chunk`;
(b) intent: the chat opens (a `warm` frame), the message is sent INTENT_DELAY seconds later (the time it
    takes to type it) → its first `stream_chunk`;
(c) awake: the chat opens, the message is sent once the agent says it runs → its first `stream_chunk`
    (what (b) becomes when the start fits in the typing time);
(d) after each of them, once the reply ended: a message in a new conversation → its first `stream_chunk`.
A task woken without a message rehearses the first turn on a stand-in model before it says it runs
(bridge/bridge/rehearsal.py, phase "rehearsal"); one started for a message does not, so in the same run
(a)'s "first-drain" phase is the first turn without a rehearsal, (c) the first message after one.
Rounds rotate the three so all see the same machine; between rounds the agent is stopped and the
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
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import websockets
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.bench_local_stack import PROMPT, Stack, _http, bridge_phases, exchange  # noqa: E402
from tests.contract.conftest import require_runtime  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
INTENT_DELAY = float(os.environ.get("BENCH_INTENT_DELAY", "5"))
COLD_GOAL, INTENT_GOAL, NEW_CONVERSATION_GOAL = 8.0, 3.0, 1.0


async def _drain(ws: ClientConnection) -> None:
    """Drop frames left from the previous round (the idle status after a stop, …)."""
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(ws.recv(), 0.05)


@dataclass
class Run:
    """One round of one mode: seconds from the message sent to its first chunk, and what led up to it."""

    first_chunk: float
    phases: dict[str, float]
    wake: str = "-"
    woken_to_running: float | None = None
    failed_starts: int = 0
    """Starts that failed on the way (the stack retries for a queued message); each is counted in."""
    new_conversation: float = 0.0
    """Seconds from a message in a new conversation, sent once the first reply ended, to its first chunk."""


async def _until_running(ws: ClientConnection, timeout: float | None) -> tuple[str, float | None]:
    """Read frames for `timeout` s (None: until the agent says running, at most 10 minutes); (what warm
    did, when the agent said running in time.monotonic(), if it did)."""
    wake, running = "-", None
    deadline = time.monotonic() + (600 if timeout is None else timeout)
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        wake = frame.get("wake", wake)
        if frame.get("code") == "start_failed":
            print(f"    (the woken start failed: {frame.get('error')}; the message will start it)")
            break
        if frame.get("type") == "status" and frame.get("status") == "running" and running is None:
            running = time.monotonic()
            if timeout is None:
                break
    return wake, running


def _why_it_failed(stack: Stack) -> str:
    """The last error the most recently stopped task's bridge logged (its log is gone with the task)."""
    stopped = [
        t for t in _http(stack.ep["ecsEndpoint"] + "/_local/tasks")["tasks"] if t["lastStatus"] == "STOPPED"
    ]
    if not stopped or not Path(stopped[-1]["log"]).exists():
        return "no log"
    lines = [json.loads(x) for x in Path(stopped[-1]["log"]).read_text().splitlines() if x.startswith("{")]
    errors = [x for x in lines if x.get("level") in ("ERROR", "CRITICAL")]
    if not errors:
        return "nothing logged as an error"
    return str(errors[-1].get("message", "?")) + (
        f" ({errors[-1]['reason']})" if "reason" in errors[-1] else ""
    )


async def _first_chunk(stack: Stack, ws: ClientConnection, mode: str) -> Run:
    """cold: send PROMPT; intent: `warm`, send PROMPT INTENT_DELAY s later; awake: `warm`, send PROMPT once
    the agent says running. The time from the send to the message's first chunk."""
    await _drain(ws)
    wake, woken, running = "-", time.monotonic(), None
    if mode != "cold":
        await ws.send(json.dumps({"action": "warm"}))
        wake, running = await _until_running(ws, INTENT_DELAY if mode == "intent" else None)
    body = {"action": "sendMessage", "message": PROMPT, "clientMessageId": uuid.uuid4().hex}
    sent = time.monotonic()
    await ws.send(json.dumps(body))
    failed = 0
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 600))
        if frame.get("code") == "start_failed":
            # The message stays queued and the stack starts another task for it (task_events): keep timing.
            failed += 1
            print(f"    ({mode}: a start failed: {frame.get('error')}: {_why_it_failed(stack)}; retried)")
            continue
        if frame["type"] == "error":
            raise RuntimeError(f"error frame: {frame}")
        if frame["type"] == "status" and frame.get("status") == "running" and running is None:
            running = time.monotonic()
        if frame["type"] == "stream_chunk":
            first = time.monotonic() - sent
            woken_to_running = None if mode == "cold" or running is None else running - woken
            while frame["type"] != "stream_end":
                frame = json.loads(await asyncio.wait_for(ws.recv(), 600))
            sent_at, frames, _ = await exchange(ws)
            return Run(first, {}, wake, woken_to_running, failed, frames["stream_chunk"] - sent_at)


async def _round(stack: Stack, ws: ClientConnection, mode: str) -> Run:
    run = await _first_chunk(stack, ws, mode)
    task = stack.running_task()
    if task is None:
        raise RuntimeError("no task is running after the reply")
    run.phases, _ = await bridge_phases(Path(task["log"]))
    for attempt in range(3):
        try:
            await stack.stop_agent()
            break
        except TimeoutError:  # the local stack's API is slow to answer on a busy machine
            print(f"    (stopping the agent timed out, attempt {attempt + 1}; trying again)")
    return run


def _report(name: str, runs: list[Run], goal: float) -> float:
    times = [r.first_chunk for r in runs]
    print(
        f"  {name}: " + ", ".join(f"{t:.2f}" for t in times) + f" s → median {median(times):.2f} s, "
        f"max {max(times):.2f} s (goal ≤ {goal:g} s)"
    )
    phases = sorted({p for r in runs for p in r.phases})
    medians = {p: median(r.phases.get(p, 0.0) for r in runs) for p in phases}
    print("    bridge phases, median s: " + ", ".join(f"{p} {s:.2f}" for p, s in medians.items()))
    if failed := sum(r.failed_starts for r in runs):
        print(f"    {failed} start(s) failed on the way and were retried by the stack (counted in the times)")
    new = median(r.new_conversation for r in runs)
    print(f"    then a new conversation → first stream_chunk: median {new:.2f} s")
    if wakes := [r.wake for r in runs if r.wake != "-"]:
        boots = [r.woken_to_running for r in runs if r.woken_to_running is not None]
        boot = f"; warm → running: median {median(boots):.1f} s" if boots else ""
        print(f"    what the warm frames did: {', '.join(wakes)}{boot}")
    return median(times)


MODES = ("cold", "intent", "awake")


async def main() -> None:
    require_runtime()
    print(
        f"first reply through the local stack (bench/bench_first_reply.py): offline model, {os.cpu_count()} "
        f"CPUs, load {os.getloadavg()[0]:.1f}, {ROUNDS} rounds, message {INTENT_DELAY:g} s after the warm"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-first-reply-"))
    stack = Stack(work)
    runs: dict[str, list[Run]] = {mode: [] for mode in MODES}
    try:
        await stack.start()
        async with websockets.connect(f"{stack.ep['webSocketUrl']}?token={stack.token}") as ws:
            for n in range(ROUNDS):
                # Rotate the order, so a trend in the machine's load hits every mode alike.
                for mode in MODES[n % 3 :] + MODES[: n % 3]:
                    runs[mode].append(await _round(stack, ws, mode))
    finally:
        await stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    cold = _report("(a) cold: message → first stream_chunk", runs["cold"], COLD_GOAL)
    _report(
        f"(b) intent: warm, message {INTENT_DELAY:g} s later → first stream_chunk",
        runs["intent"],
        INTENT_GOAL,
    )
    awake = _report("(c) warm, message once it runs → first stream_chunk", runs["awake"], INTENT_GOAL)
    unrehearsed = median(r.phases.get("first-drain", 0.0) for r in runs["cold"])
    print(
        f"  first turn after a boot: unrehearsed ((a)'s first-drain, the whole reply) {unrehearsed:.2f} s; "
        f"the first message after one ((c), to its first chunk) {awake:.2f} s: {unrehearsed / awake:.1f}x"
    )
    warm = median(r.new_conversation for mode in MODES for r in runs[mode])
    print(
        f"  (d) new conversation on a warm agent → first stream_chunk: median {warm:.2f} s "
        f"(goal ≤ {NEW_CONVERSATION_GOAL:g} s of OpenClaw beyond the model's own)"
    )
    pairs = [c.first_chunk - i.first_chunk for c, i in zip(runs["cold"], runs["intent"], strict=True)]
    per_round = ", ".join(f"{d:.1f}" for d in pairs)
    print(
        f"  (a) − (b), per round: {per_round} s (at most the {INTENT_DELAY:g} s head start while a start "
        f"takes longer than that); (c) is what wake on intent gives once the start fits in the typing time: "
        f"{cold - awake:.1f} s less than cold"
    )
    print(f"  (load average {os.getloadavg()[0]:.1f} at the end; other work on this machine skews the times)")


if __name__ == "__main__":
    asyncio.run(main())
