"""The whole product through the local stack (`python -m local up --model offline`), as a user sees it.

Cold start (message sent → first stream_chunk, no agent running) split into our pipeline, the bridge's
start-up, OpenClaw's boot and the first run; warm reply latency and our share of it; the memory of the
whole stack idle and with one agent. Goals: cold ≤ 12 s on this 2-core machine; our share of a warm reply
≤ 50 ms. Starts its own stack on free loopback ports in a temporary state dir and stops it with SIGINT.
Prints figures; never fails on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]
os.environ.update({"LOG_LEVEL": "WARNING", "AWS_DEFAULT_REGION": "us-east-1"})

import boto3  # noqa: E402
import websockets  # noqa: E402
from websockets.asyncio.client import ClientConnection  # noqa: E402

from bridge.openclaw_client import GatewayClient  # noqa: E402
from bridge.openclaw_session import session_key_for  # noqa: E402
from tests.contract.conftest import require_runtime, start_gateway  # noqa: E402

COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "3"))
WARM_MESSAGES = int(os.environ.get("BENCH_WARM_MESSAGES", "20"))
PROMPT = "say 5 words"
OPENCLAW_PHASES = ("gateway", "handshake")
SETTLE_SECONDS = 0.5
_FAKE_KEY = "x"  # moto accepts any signature
Frames = dict[str, float]  # frame type (a status frame: its status) → first arrival, time.time()


def _p95(v: list[float]) -> float:
    return sorted(v)[min(len(v) - 1, round(0.95 * (len(v) - 1)))]


def _http(url: str, token: str = "", method: str = "GET") -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = b"" if method == "POST" else None
    with urllib.request.urlopen(urllib.request.Request(url, body, headers, method=method), timeout=10) as r:
        return json.loads(r.read() or b"null")


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # from field 3 (state) on: comm may hold spaces


def _forked_at(pid: int) -> float:
    """When the process was forked, as time.time() (starttime counts clock ticks since boot)."""
    since_boot = int(_stat(pid)[19]) / os.sysconf("SC_CLK_TCK")
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot)


def _role(pid: int, stack_pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    script = next((a for a in argv[1:] if a.endswith((".js", ".mjs"))), "")
    if pid == stack_pid:
        return "stack (python -m local: moto, APIs, functions, ECS, model)"
    if argv[1:3] == ["-m", "bridge"]:
        return "bridge (python -m bridge)"
    return "  helper " + "/".join(Path(script).parts[-2:]) if script else Path(argv[0]).name


def memory(stack_pid: int) -> dict[str, float]:
    """VmRSS (MB) of the stack process and every descendant (by parent-PID chains), by role."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(entry.name)] = int(_stat(int(entry.name))[1])
    tree, frontier = [stack_pid], [stack_pid]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    usage: dict[str, float] = {}
    for pid in tree:
        with contextlib.suppress(OSError, StopIteration):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
            usage[_role(pid, stack_pid)] = usage.get(_role(pid, stack_pid), 0.0) + rss
    return usage


class Stack:
    """`python -m local up` as a child process, with the demo user logged in."""

    def __init__(self, work: Path, *extra: str) -> None:
        self.work, self.ep, self.token, self.extra = work, dict[str, Any](), "", list(extra)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> int:
        self.work.mkdir(parents=True, exist_ok=True)
        out, state = (self.work / "stack.out").open("wb"), self.work / "state"
        up = ["up", "--state-dir", str(state), "--port-base", "0", "--model", "offline", *self.extra]
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "local", *up, cwd=ROOT, stdout=out, stderr=out
        )
        for _ in range(1800):
            if (state / "endpoints.json").exists() or self.process.returncode is not None:
                break
            await asyncio.sleep(0.1)
        if not (state / "endpoints.json").exists():
            raise RuntimeError("the stack did not start: " + (self.work / "stack.out").read_text()[-2000:])
        self.ep = json.loads((state / "endpoints.json").read_text())
        cognito = boto3.client(
            "cognito-idp",
            endpoint_url=self.ep["cognitoEndpoint"],
            aws_access_key_id=_FAKE_KEY,
            aws_secret_access_key=_FAKE_KEY,
        )
        auth = {"USERNAME": self.ep["username"], "PASSWORD": self.ep["password"]}
        answer = cognito.initiate_auth(
            ClientId=self.ep["userPoolClientId"], AuthFlow="USER_PASSWORD_AUTH", AuthParameters=auth
        )
        self.token = answer["AuthenticationResult"]["IdToken"]
        return self.process.pid

    def running_task(self) -> dict[str, Any] | None:
        tasks = _http(self.ep["ecsEndpoint"] + "/_local/tasks")["tasks"]
        return next((t for t in reversed(tasks) if t["lastStatus"] != "STOPPED"), None)

    async def stop_agent(self) -> None:
        """POST /api/agent/stop, then wait until no task runs and the user's status is idle."""
        _http(self.ep["httpApiUrl"] + "/api/agent/stop", self.token, "POST")
        for _ in range(600):
            status = _http(self.ep["httpApiUrl"] + "/api/status", self.token)["status"]
            if status == "idle" and self.running_task() is None:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("the agent did not stop within 60 s")

    async def stop(self) -> None:
        """SIGINT (the agents' final backup takes a few seconds); escalate only if it hangs."""
        for sig, grace in ((signal.SIGINT, 90), (signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            if self.process is None or self.process.returncode is not None:
                return
            self.process.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)


async def exchange(ws: ClientConnection, conversation: str | None = None) -> tuple[float, Frames, str]:
    """Send PROMPT, read frames until stream_end: (sent at, first arrival of each frame, conversation)."""
    with contextlib.suppress(TimeoutError):  # drop leftovers (the idle status after a stop, …)
        while True:
            await asyncio.wait_for(ws.recv(), 0.05)
    body = {"action": "sendMessage", "message": PROMPT, "clientMessageId": uuid.uuid4().hex}
    body |= {"conversationId": conversation} if conversation else {}
    frames: Frames = {}
    sent = time.time()
    await ws.send(json.dumps(body))
    while "stream_end" not in frames:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 180))
        if frame["type"] == "error":
            raise RuntimeError(f"error frame: {frame}")
        frames.setdefault(frame["status"] if frame["type"] == "status" else frame["type"], time.time())
        conversation = conversation or frame.get("conversationId")
    return sent, frames, str(conversation)


async def bridge_phases(log: Path) -> tuple[dict[str, float], float]:
    """The bridge's phase durations and when its first phase began (time.time()), from its JSON log."""
    for _ in range(300):
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        if ready := next((x for x in lines if x.get("message") == "bridge ready"), None):
            first = next(x for x in lines if x.get("message") == "startup phase done")
            ended = datetime.strptime(first["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
            return dict(ready["phases"]), ended - float(first["seconds"])
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no 'bridge ready' in {log}")


async def cold_starts(stack: Stack, ws: ClientConnection) -> None:
    parts: dict[str, list[float]] = {}
    for _ in range(COLD_RUNS):
        sent, frames, _ = await exchange(ws)
        task = stack.running_task()
        assert task and task["pid"], "no running task after a cold start"
        forked = _forked_at(task["pid"])
        phases, first_phase = await bridge_phases(Path(task["log"]))
        openclaw = sum(phases[p] for p in OPENCLAW_PHASES)
        measured = {
            "total": frames["stream_chunk"] - sent,
            "pipeline": forked - sent,
            "ack": frames["ack"] - sent,
            "bridge": frames["running"] - forked - openclaw,
            "python": first_phase - forked,
            "own": sum(s for p, s in phases.items() if p not in (*OPENCLAW_PHASES, "first-drain")),
            "openclaw": openclaw,
            "first run": frames["stream_chunk"] - frames["running"],
        }
        for name, value in (measured | {f"phase {p}": s for p, s in phases.items()}).items():
            parts.setdefault(name, []).append(value)
        await stack.stop_agent()
    print(f"  cold start: message sent → first stream_chunk, no agent running ({COLD_RUNS} runs)")
    print(f"    {'':<48} {'min':>8} {'median':>8}")
    for label, key, note in (
        ("total", "total", "goal ≤ 12 s"),
        ("(a) our pipeline: sent → bridge process forked", "pipeline", "ws_message, RunTask, ECS spawn"),
        ("      sent → ack at the client", "ack", "the ack comes after RunTask"),
        ("(b) bridge start-up, OpenClaw's boot excluded", "bridge", "forked → `running` at the client"),
        ("      python start-up and imports", "python", "forked → first phase"),
        ("      own phases (all but gateway, handshake)", "own", "metadata, secrets, restore, …"),
        ("(c) OpenClaw boot: gateway + handshake phases", "openclaw", "spawned → listening → hello-ok"),
        ("(d) first run: `running` → first stream_chunk", "first run", "claim, OpenClaw's 1st run, push"),
    ):
        print(f"    {label:<48} {min(parts[key]):6.2f} s {median(parts[key]):6.2f} s   {note}")
    medians = [f"{k[6:]} {median(v):.3f}" for k, v in parts.items() if k.startswith("phase ")]
    print("    bridge phases, median s: " + ", ".join(medians))


async def direct_run(client: GatewayClient, session_key: str) -> float:
    """chat.send → first delta (ms) on our own gateway, through the bridge's GatewayClient."""
    sent, first = time.time(), [0.0]

    async def on_delta(text: str) -> None:
        first[0] = first[0] or time.time()

    await client.run(session_key, PROMPT, idempotency_key=uuid.uuid4().hex, on_delta=on_delta)
    return (first[0] - sent) * 1000


def model_first_token(model_url: str) -> list[float]:
    """A minimal streamed completion straight to the offline model: request → first content chunk (ms)."""
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
    samples = []
    for _ in range(WARM_MESSAGES):
        request = urllib.request.Request(model_url + "/chat/completions", body.encode())
        sent = time.time()
        with urllib.request.urlopen(request, timeout=10) as resp:
            next(line for line in resp if b'"content": "' in line and b'"content": ""' not in line)
            samples.append((time.time() - sent) * 1000)
    return samples


async def warm(stack: Stack, ws: ClientConnection, work: Path) -> dict[str, list[float]]:
    """Warm replies (ms), each paired with the same run on a gateway of our own; a moto baseline."""
    _, _, conversation = await exchange(ws)  # starts the agent again (not measured)
    task = stack.running_task()
    assert task is not None, "the agent is not running"
    environ = Path(f"/proc/{task['pid']}/environ").read_bytes().split(b"\0")
    model_url = next(v[15:].decode() for v in environ if v.startswith(b"MODEL_BASE_URL="))
    # Same pinned OpenClaw, config builder, model server and client as the agent's: what is left of a
    # warm reply when this is taken away is our pipeline. Run in turns, so both see the same load, each
    # after a pause so that neither pays for the other's tail (the bridge stores the reply after it).
    gateway = await start_gateway(work / "gateway", model_url)
    client, key = GatewayClient(gateway.url, gateway.token), session_key_for(uuid.uuid4().hex)
    ms: dict[str, list[float]] = {"chunk": [], "ack": [], "openclaw": [], "moto": []}
    try:
        await client.start()
        await direct_run(client, key)  # a session's first run is slow, as the conversation's was
        for _ in range(WARM_MESSAGES):
            await asyncio.sleep(SETTLE_SECONDS)
            sent, frames, _ = await exchange(ws, conversation)
            ms["chunk"].append((frames["stream_chunk"] - sent) * 1000)
            ms["ack"].append((frames["ack"] - sent) * 1000)
            await asyncio.sleep(SETTLE_SECONDS)
            ms["openclaw"].append(await direct_run(client, key))
    finally:
        await client.close()
        await gateway.stop()
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=stack.ep["awsEndpoint"],
        aws_access_key_id=_FAKE_KEY,
        aws_secret_access_key=_FAKE_KEY,
    )
    table, item = stack.ep["tables"]["TASK_STATE_TABLE"], {"PK": {"S": f"USER#{stack.ep['userId']}"}}
    for _ in range(WARM_MESSAGES):
        t = time.time()
        dynamodb.get_item(TableName=table, Key=item)
        ms["moto"].append((time.time() - t) * 1000)
    ms["model"] = model_first_token(model_url)
    return ms


def print_warm(ms: dict[str, list[float]]) -> None:
    print(f"  warm reply: agent running, {WARM_MESSAGES} messages one after another in one conversation")
    for label, key, note in (
        ("sent → first stream_chunk", "chunk", "what the user waits for"),
        ("sent → ack", "ack", "WebSocket API, ws_message: Inbox, nudge, ack"),
        ("OpenClaw alone: chat.send → first delta", "openclaw", "our own gateway, in turns with the above"),
        ("  the model alone: request → first token", "model", "minimal request, straight to it"),
        ("one DynamoDB GetItem on the stack's moto", "moto", "for scale: AWS takes ~5 ms"),
    ):
        v = ms[key]
        print(f"    {label:<41} median {median(v):6.1f} ms  p95 {_p95(v):6.1f} ms   {note}")
    share = [chunk - openclaw for chunk, openclaw in zip(ms["chunk"], ms["openclaw"], strict=True)]
    print(
        f"    our share = warm reply − OpenClaw alone, per pair: median {median(share):.0f} ms, p95 "
        f"{_p95(share):.0f} ms (a noisy cross-check of the figure below)"
    )
    print("      = WebSocket API, ws_message, Inbox write + nudge, the bridge's claim (DynamoDB Query +")
    print("      UpdateItem), the push back through the management API; a difference of two noisy figures")


def print_memory(columns: dict[str, dict[str, float]]) -> None:
    print("  memory of the whole stack: VmRSS, MB (shared pages count in every process)")
    print(f"    {'process':<60}" + "".join(f"{name:>14}" for name in columns))
    labels = list(dict.fromkeys(label for usage in columns.values() for label in usage))
    for label in [*labels, "total"]:
        cells = [sum(u.values()) if label == "total" else u.get(label) for u in columns.values()]
        print(f"    {label:<60}" + "".join(f"{c:14.0f}" if c is not None else f"{'-':>14}" for c in cells))


async def own_pipeline(work: Path) -> dict[str, list[float]]:
    """The same stack with an instant protocol-v4 gateway in place of OpenClaw: our pipeline alone (ms)."""
    fake = ["--gateway-command", sys.executable, str(ROOT / "bench" / "fake_openclaw.py")]
    stack = Stack(work, *fake)
    ms: dict[str, list[float]] = {"cold": [], "warm": []}
    try:
        await stack.start()
        async with websockets.connect(f"{stack.ep['webSocketUrl']}?token={stack.token}") as ws:
            sent, frames, conversation = await exchange(ws)
            ms["cold"].append((frames["stream_chunk"] - sent) * 1000)
            for _ in range(WARM_MESSAGES):
                await asyncio.sleep(SETTLE_SECONDS)
                sent, frames, _ = await exchange(ws, conversation)
                ms["warm"].append((frames["stream_chunk"] - sent) * 1000)
    finally:
        await stack.stop()
    return ms


def print_own(ms: dict[str, list[float]]) -> None:
    print(
        "  our pipeline alone: the same stack and bridge, an instant protocol-v4 gateway in place of OpenClaw"
    )
    print(
        f"    cold: sent → first stream_chunk   {ms['cold'][0]:7.1f} ms"
        "   RunTask, bridge start-up, dial-out, claim, push"
    )
    warm_ms = ms["warm"]
    print(
        f"    warm: sent → first stream_chunk   median {median(warm_ms):6.1f} ms  p95 {_p95(warm_ms):6.1f} ms"
        "   our share of a warm reply (goal ≤ 50 ms)"
    )


async def main() -> None:
    require_runtime()
    cpus, load = os.cpu_count(), os.getloadavg()[0]
    print(f"local stack end to end (bench/bench_local_stack.py): offline model, {cpus} CPUs, load {load:.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench-local-stack-"))
    stack = Stack(work)
    try:
        pid = await stack.start()
        idle = memory(pid)
        async with websockets.connect(f"{stack.ep['webSocketUrl']}?token={stack.token}") as ws:
            await cold_starts(stack, ws)
            ms = await warm(stack, ws, work)
            running = memory(pid)
            await stack.stop_agent()
        idle_after = memory(pid)
        own = await own_pipeline(work / "own")
    finally:
        await stack.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_warm(ms)
    print_own(own)
    print_memory({"idle (fresh)": idle, "one agent": running, "idle (after)": idle_after})
    print(f"  (load average {os.getloadavg()[0]:.1f} at the end; other work on this machine skews the times)")


if __name__ == "__main__":
    asyncio.run(main())
