"""The bridge's finish path against in-process moto: how long a file the agent reported written is not yet
in S3, and what fencing costs a warm reply. Baselines measured in the same run.

1. Loss window: a run writes one file to the workspace and its reply says so; the window is the time
   from the final frame (`stream_end`) to the file's upload to S3 (≤ 0 when it is there before the user
   is told), and a file counts as lost to a SIGKILL right after the final frame when S3 does not hold
   it at that instant. Ours backs up before the final frame; the baseline is the previous schedule, a
   backup `BENCH_DEBOUNCE` seconds (the bridge's default, 5) after the answer. Goal: 0 files lost. Also
   printed: the latency the backup adds between the end of the run and the final frame. Each S3 request
   waits an emulated round trip (BENCH_RTT_MS, default 15 ms) as in bench_state_sync.

2. Fencing on a warm reply: AWS calls and milliseconds per answered message, from the claim to the
   deleted Inbox item, for ours (claim, then one transaction: reply row + TaskState check + Inbox
   delete; the fence trusts its recent confirmations and makes no call) against the baseline (the
   previous sequence replayed through the same stores: claim, store the reply, then delete the item).
   Goal: ≤ 1 extra call. Prints figures; never fails on time.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared"), str(ROOT / "bridge")]

from tests.conftest import TEST_ENV  # noqa: E402

os.environ.update({**TEST_ENV, "LOG_LEVEL": "WARNING"})

from moto import mock_aws  # noqa: E402

from bench.moto_probe import calls, counting, percentile  # noqa: E402
from bridge.agent_loop import InboxLoop  # noqa: E402
from bridge.backups import Backups  # noqa: E402
from bridge.fence import Fence  # noqa: E402
from bridge.metrics import BridgeMetrics  # noqa: E402
from bridge.state_sync import StateSync, SyncRoot  # noqa: E402
from local.template import create_tables, load_template  # noqa: E402
from serverless_openclaw.aws import clients  # noqa: E402
from serverless_openclaw.config import Tables  # noqa: E402
from serverless_openclaw.lifecycle import Capacity, Status  # noqa: E402
from serverless_openclaw.messages import InboxItem, IncomingMessage, reply_id  # noqa: E402
from serverless_openclaw.store.conversations import ConversationStore  # noqa: E402
from serverless_openclaw.store.inbox import InboxStore  # noqa: E402
from serverless_openclaw.store.intake import IntakeStore  # noqa: E402
from serverless_openclaw.store.task_state import TaskStateStore  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "50"))
BASELINE_RUNS = int(os.environ.get("BENCH_BASELINE_RUNS", "5"))
DEBOUNCE = float(os.environ.get("BENCH_DEBOUNCE", "5"))
RTT_MS = float(os.environ.get("BENCH_RTT_MS", "15"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "200"))
USER = "bench-user"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/bench/t1"
BUCKET = "bench-data"


@dataclass
class Outcome:
    text: str
    state: str = "final"
    error_message: str | None = None
    error_kind: str | None = None


@dataclass
class FileWriter:
    """The model, as far as the finish path sees it: writes the file the message names, says so."""

    workspace: Path
    finished_at: dict[str, float] = field(default_factory=dict)

    async def run(self, session_key: str, message: str, **options: Any) -> Outcome:
        name = message.split()[-1]
        (self.workspace / name).write_text(f"content of {name}\n")
        on_delta: Callable[[str], Awaitable[None]] | None = options.get("on_delta")
        if on_delta:
            await on_delta(f"Created {name}.")
        self.finished_at[name] = time.perf_counter()
        return Outcome(f"Created {name}.")

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        return True


@dataclass
class Tab:
    """Records when each reply's final frame went out, and whether S3 held its file at that instant."""

    uploads: dict[str, float]
    final_at: dict[str, float] = field(default_factory=dict)
    in_s3_at_final: dict[str, bool] = field(default_factory=dict)

    def open(self, item: InboxItem, message_id: str) -> Tab.Stream:
        return Tab.Stream(self, item.text.split()[-1])

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        return None

    @dataclass
    class Stream:
        tab: Tab
        name: str

        async def chunk(self, text: str) -> None:
            return None

        async def rewrite(self, text: str) -> None:
            return None

        async def end(self, full_text: str) -> None:
            self.tab.final_at[self.name] = time.perf_counter()
            self.tab.in_s3_at_final[self.name] = f"workspace/{self.name}" in self.tab.uploads

        async def fail(self, code: str, message: str) -> None:
            raise AssertionError(f"{self.name} failed: {code} {message}")


def _s3_client(uploads: dict[str, float]) -> Any:
    s3 = clients.client("s3")

    def delay(**_: Any) -> None:
        if RTT_MS:
            time.sleep(RTT_MS / 1000)

    def remember_key(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["bench_key"] = str(params.get("Key", ""))

    def uploaded(context: Mapping[str, Any], **_: Any) -> None:
        # Recorded once S3 answered: from then on the object is there.
        key = str(context.get("bench_key", ""))
        uploads.setdefault(key.split(f"users/{USER}/", 1)[-1], time.perf_counter())

    s3.meta.events.register("before-send.s3", delay)
    s3.meta.events.register("before-parameter-build.s3.PutObject", remember_key)
    s3.meta.events.register("after-call.s3.PutObject", uploaded)
    return s3


def _stores() -> tuple[IntakeStore, InboxStore, ConversationStore, TaskStateStore]:
    tables = Tables.from_env(TEST_ENV)
    return (
        IntakeStore(tables),
        InboxStore(tables.inbox),
        ConversationStore(tables.conversations),
        TaskStateStore(tables.task_state),
    )


async def _nothing() -> None:
    return None


def _name_task(task_state: TaskStateStore) -> None:
    started = task_state.transition(task_state.get(USER), Status.STARTING, time.time())
    if started is None or not task_state.record_launch(started, TASK, Capacity.SPOT):
        raise RuntimeError("could not name the bench task in TaskState")


def _fence(inbox: InboxStore, task_state: TaskStateStore) -> Fence:
    fence = Fence(
        user_id=USER,
        task_arn=TASK,
        inbox=inbox,
        task_state=task_state,
        clock=time.time,
        lease_seconds=120,
        heartbeat_limit=180,
    )
    fence.task_confirmed(time.time())
    return fence


async def _loss_window(work: Path, *, before_final: bool, runs: int) -> dict[str, Any]:
    """Answer `runs` file-writing messages; the windows, the files a kill at the final frame would lose."""
    intake, inbox, conversations, task_state = _stores()
    uploads: dict[str, float] = {}
    workspace = work / ("ours" if before_final else "baseline")
    workspace.mkdir()
    sync = StateSync(_s3_client(uploads), BUCKET, USER, [SyncRoot("workspace", workspace)])
    await asyncio.to_thread(sync.restore)
    backups = Backups(
        sync,
        BridgeMetrics(clients.client("cloudwatch"), "Bench"),
        clock=time.time,
        debounce=DEBOUNCE,
        interval=60,
    )
    runner, tab = FileWriter(workspace), Tab(uploads)
    stopping = [False]

    async def back_up() -> None:
        await backups.backup("answer")

    loop = InboxLoop(
        user_id=USER,
        claimer=TASK,
        inbox=inbox,
        conversations=conversations,
        runner=runner,
        delivery=tab,
        fence=_fence(inbox, task_state),
        session_key_for=lambda conversation: f"agent:main:conversation:{conversation}",
        before_final=back_up if before_final else _nothing,
        on_answered=backups.due,
    )
    schedule = asyncio.create_task(backups.run_forever(busy=lambda: loop.busy, stopping=lambda: stopping[0]))
    prefix = "ours" if before_final else "base"
    for n in range(runs):
        intake.accept(IncomingMessage(USER, f"create file {prefix}{n:03d}.md", "web", "bench"), time.time())
        await loop.drain()
    names = list(tab.final_at)
    # The scheduled backup (the only one for the baseline) comes one debounce after the last answer.
    deadline = time.perf_counter() + DEBOUNCE + 30
    while any(f"workspace/{name}" not in uploads for name in names) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    stopping[0] = True
    schedule.cancel()
    windows = [(uploads[f"workspace/{name}"] - tab.final_at[name]) * 1000 for name in names]
    added = [(tab.final_at[name] - runner.finished_at[name]) * 1000 for name in names]
    return {
        "runs": len(names),
        "windows": windows,
        "lost": sum(not tab.in_s3_at_final[name] for name in names),
        "added": added,
    }


def _print_loss(label: str, result: dict[str, Any]) -> None:
    windows, added = result["windows"], result["added"]
    exposed = [max(0.0, w) for w in windows]
    print(
        f"  {label:<9} {result['runs']:3d} runs   window median {statistics.median(exposed):7.1f} ms   "
        f"max {max(exposed):7.1f} ms   lost to a kill at the final frame {result['lost']}/{result['runs']}"
    )
    print(
        f"            upload − final frame (negative: in S3 before the user was told): "
        f"median {statistics.median(windows):7.1f} ms   max {max(windows):7.1f} ms"
    )
    print(
        f"            end of run → final frame: median {statistics.median(added):6.1f} ms   "
        f"p95 {percentile(added, 0.95):6.1f} ms"
    )


def _queue(intake: IntakeStore, n: int, label: str) -> None:
    intake.accept(IncomingMessage(USER, f"{label} {n}", "web", f"warm-{label}"), time.time())


def _baseline_answer(inbox: InboxStore, conversations: ConversationStore) -> None:
    """The previous finish path, replayed through the same stores: claim, store the reply, delete the item."""
    item = inbox.claim_next(USER, TASK, time.time(), 120)
    if item is None:
        raise RuntimeError("nothing to claim")
    conversations.add_message(
        USER,
        item.conversation_id,
        "assistant",
        "ok",
        "web",
        time.time(),
        message_id=reply_id(item.message_id),
        extra={"replyTo": item.message_id},
    )
    inbox.complete(item, TASK)


@dataclass
class Echo:
    async def run(self, session_key: str, message: str, **options: Any) -> Outcome:
        return Outcome("ok")

    async def abort(self, session_key: str, run_id: str | None = None) -> bool:
        return True


@dataclass
class Silent:
    def open(self, item: InboxItem, message_id: str) -> Silent:
        return self

    async def notice(self, user_id: str, frame: Mapping[str, Any]) -> None:
        return None

    async def chunk(self, text: str) -> None:
        return None

    async def rewrite(self, text: str) -> None:
        return None

    async def end(self, full_text: str) -> None:
        return None

    async def fail(self, code: str, message: str) -> None:
        raise AssertionError(message)


async def _warm_cost() -> None:
    intake, inbox, conversations, task_state = _stores()
    fence = _fence(inbox, task_state)
    loop = InboxLoop(
        user_id=USER,
        claimer=TASK,
        inbox=inbox,
        conversations=conversations,
        runner=Echo(),
        delivery=Silent(),
        fence=fence,
        session_key_for=lambda conversation: f"agent:main:conversation:{conversation}",
    )
    figures: dict[str, tuple[float, float, dict[str, int]]] = {}
    for label in ("baseline", "ours"):
        for n in range(MESSAGES):
            _queue(intake, n, label)
        samples: list[float] = []
        with counting():
            for _ in range(MESSAGES):
                t = time.perf_counter()
                if label == "ours":
                    # What `drain` does for each message: claim the oldest, then answer it.
                    item = await asyncio.to_thread(inbox.claim_next, USER, TASK, time.time(), 120)
                    if item is None:
                        raise RuntimeError("nothing to claim")
                    await loop.process(item)
                else:
                    await asyncio.to_thread(_baseline_answer, inbox, conversations)
                samples.append((time.perf_counter() - t) * 1000)
            per_call = dict(calls)
        if inbox.items(USER):
            raise RuntimeError(f"{label}: messages left in the Inbox")
        figures[label] = (statistics.median(samples), percentile(samples, 0.95), per_call)
    print(f"\nfencing on a warm reply: {MESSAGES} messages, claim → item deleted, in-process moto")
    for label, (median, p95, per_call) in figures.items():
        total = sum(per_call.values()) / MESSAGES
        print(f"  {label:<9} {total:.2f} AWS calls per message   median {median:6.2f} ms   p95 {p95:6.2f} ms")
        for name, count in sorted(per_call.items()):
            print(f"              {name:<40} {count / MESSAGES:.2f}")
    extra = (sum(figures["ours"][2].values()) - sum(figures["baseline"][2].values())) / MESSAGES
    print(f"  fencing adds {extra:+.2f} calls per message (goal ≤ +1); fence look-ups: {fence.checks}")


async def main() -> None:
    with mock_aws(), tempfile.TemporaryDirectory() as tmp:
        clients.reset()
        create_tables(clients.client("dynamodb"), load_template(), "test")
        s3 = clients.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        _name_task(TaskStateStore(TEST_ENV["TASK_STATE_TABLE"]))
        print(f"loss window of a file the agent reported written (S3 round trip {RTT_MS:g} ms)")
        ours = await _loss_window(Path(tmp), before_final=True, runs=RUNS)
        _print_loss("ours", ours)
        baseline = await _loss_window(Path(tmp), before_final=False, runs=BASELINE_RUNS)
        _print_loss("baseline", baseline)
        await _warm_cost()


if __name__ == "__main__":
    asyncio.run(main())
