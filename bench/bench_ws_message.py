"""Warm `ws_message` sendMessage for a running agent against in-process moto: handler time and AWS calls.

Goals: ≤ 15 ms median handler time, ≤ 5 AWS calls per message. Every other frame names the one sent
before it (`after`, as a tab typing fast does), whose check rides in the intake transaction. The time
spent inside moto's emulation (which deep-copies every table a transaction touches, so it grows with
the table) is measured apart and subtracted: what remains is our code plus botocore's request building,
the part that runs in Lambda. Baseline measured in the same run: one moto GetItem round trip. Prints
figures; never fails on time.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "shared")]

from tests.conftest import TEST_ENV, load_event  # noqa: E402

os.environ.update(TEST_ENV)

from moto import mock_aws  # noqa: E402

from bench.moto_probe import calls, counting, in_moto, percentile  # noqa: E402
from local.template import create_tables, load_template  # noqa: E402
from serverless_openclaw import routing  # noqa: E402
from serverless_openclaw.aws import clients  # noqa: E402
from serverless_openclaw.connections import Connection  # noqa: E402
from serverless_openclaw.lifecycle import Status  # noqa: E402
from tests.fakes import FakeLambdaContext, FakeLauncher  # noqa: E402

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "300"))
USER = "bench-user"
CLIENT = "client-conn"
AGENT = "agent-conn"


def main() -> None:
    with mock_aws():
        clients.reset()
        create_tables(clients.client("dynamodb"), load_template(), "test")
        app = importlib.import_module("functions.ws_message.app")
        plane = app.plane
        plane.launcher = FakeLauncher()  # ECS is not in the warm path; a running agent is
        # A running agent with a live agent connection, and the user's browser connection.
        started = routing.request_start(plane, USER)
        assert started.task_arn
        state = plane.task_state.get(USER)
        plane.task_state.transition(state, Status.RUNNING, time.time())
        plane.task_state.attach_agent(USER, started.task_arn, AGENT, time.time())
        plane.connections.put(Connection(CLIENT, USER, "client", time.time()))
        clients.client("apigatewaymanagementapi", plane.pusher.endpoint)

        event: dict[str, Any] = load_event("ws_message_send_message.json")
        event["requestContext"]["connectionId"] = CLIENT

        def send(n: int) -> dict[str, Any]:
            frame = {"action": "sendMessage", "message": f"message {n}", "clientMessageId": f"bench-{n}"}
            if n > 0 and n % 2:
                frame["after"] = f"bench-{n - 1}"
            event["body"] = json.dumps(frame)
            with contextlib.redirect_stdout(io.StringIO()):
                result: dict[str, Any] = app.lambda_handler(event, FakeLambdaContext())
            return result

        for n in range(20):  # warm-up: the first frame of the connection reads its row
            send(-n - 1)

        samples, own = [], []
        with counting():
            for n in range(MESSAGES):
                in_moto[0] = 0.0
                t = time.perf_counter()
                reply = json.loads(send(n)["body"])
                elapsed = time.perf_counter() - t
                samples.append(elapsed * 1000)
                own.append((elapsed - in_moto[0]) * 1000)
                assert reply["type"] == "ack" and reply["status"] == "running", reply

        ddb = clients.client("dynamodb")
        key = {"PK": {"S": f"USER#{USER}"}}
        base = []
        for _ in range(MESSAGES):
            t = time.perf_counter()
            ddb.get_item(TableName=TEST_ENV["TASK_STATE_TABLE"], Key=key)
            base.append((time.perf_counter() - t) * 1000)

    per_message = sum(calls.values()) / MESSAGES
    median, p95, base_median = statistics.median(samples), percentile(samples, 0.95), statistics.median(base)
    print(
        f"warm ws_message sendMessage to a running agent, {MESSAGES} messages (half with after), "
        "in-process moto"
    )
    own_median, own_p95 = statistics.median(own), percentile(own, 0.95)
    print(f"  handler time   median {median:6.2f} ms   p95 {p95:6.2f} ms   (including moto's emulation)")
    print(f"  without moto   median {own_median:6.2f} ms   p95 {own_p95:6.2f} ms   (goal ≤ 15 ms median)")
    print(f"  baseline       one moto GetItem {base_median:.2f} ms → handler = {median / base_median:.1f}×")
    print(f"  AWS calls      {per_message:.2f} per message (goal ≤ 5):")
    for name, n in sorted(calls.items()):
        print(f"                 {name:<45} {n / MESSAGES:.2f}")


if __name__ == "__main__":
    main()
