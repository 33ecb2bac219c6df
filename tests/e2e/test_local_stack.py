"""The product end to end through the local stack: real functions, real bridge, real OpenClaw, offline model.

Each test starts its own `python -m local up` (free ports, its own state directory) and talks to it as
a browser would: Cognito login, the WebSocket API, the HTTP API.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e.harness import REPO, ChatClient, LocalStackProcess, until, user_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

StartStack = Callable[..., LocalStackProcess]


def _backdate_activity(stack: LocalStackProcess, user_id: str, seconds: float) -> None:
    """Pretend the user was quiet for `seconds` (the watchdog judges idleness by lastActivity)."""
    stack.client("dynamodb").update_item(
        TableName=stack.table("TASK_STATE_TABLE"),
        Key={"PK": {"S": f"USER#{user_id}"}},
        UpdateExpression="SET lastActivity = :then",
        ExpressionAttributeValues={":then": {"N": str(time.time() - seconds)}},
    )


def _backdate(
    stack: LocalStackProcess, table: str, key: dict[str, Any], attribute: str, seconds: float
) -> None:
    """Set a timestamp attribute of one row to `seconds` ago."""
    stack.client("dynamodb").update_item(
        TableName=stack.table(table),
        Key=key,
        UpdateExpression="SET #a = :then",
        ExpressionAttributeNames={"#a": attribute},
        ExpressionAttributeValues={":then": {"N": str(time.time() - seconds)}},
    )


async def _no_agent_running(stack: LocalStackProcess, user_id: str, what: str) -> None:
    await until(
        lambda: not stack.running_tasks() and stack.task_state(user_id).get("status") == "Idle",
        180,
        what,
        stack,
    )


@pytest.mark.timeout(1200)  # two starts of the stack and four boots of OpenClaw
async def test_the_workspace_survives_every_stop_of_the_agent_and_a_killed_stack_cleans_up_when_started(
    start_stack: StartStack,
) -> None:
    stack = start_stack("--schedule-every", "2")
    user_id, token = stack.endpoints["userId"], stack.login()
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # Given the agent was asked to create test.md
        asked = await tab.send_message("create file test.md with the text survives the agent 42")
        created = await tab.reply_to(asked)
        assert "Created test.md" in created["content"]
        conversation = created["conversationId"]
        # Then the file reaches S3
        await until(
            lambda: stack.workspace_file(user_id, "test.md") == b"survives the agent 42",
            60,
            "test.md in S3",
            stack,
        )

        # When the user has been quiet past the idle timeout, the watchdog stops the agent
        _backdate_activity(stack, user_id, 3600)
        await _no_agent_running(stack, user_id, "the watchdog's idle stop")
        assert stack.tasks()[0]["stopCode"] == "UserInitiated" and stack.tasks()[0]["exitCode"] == 0

        # Then a new message starts a new task that restored the file
        shown = await tab.reply_to(await tab.send_message("show test.md", conversation))
        assert "survives the agent 42" in shown["content"]

        # When the user stops the agent explicitly
        stopped = stack.api("POST", "/api/agent/stop", token)
        assert stopped.status_code == 202, stopped.text
        await _no_agent_running(stack, user_id, "the explicit stop")

        # Then a third task restores it again
        again = await tab.reply_to(await tab.send_message("show test.md", conversation))
        assert "survives the agent 42" in again["content"]
    tasks = stack.tasks()
    assert len(tasks) == 3, tasks
    assert len({t["taskId"] for t in tasks}) == 3

    # Given that running agent's state reached a periodic snapshot after its answer
    [task] = stack.running_tasks()
    answered = time.time()
    snapshot = stack.state_dir / "aws-state.pickle"
    await until(
        lambda: snapshot.exists() and snapshot.stat().st_mtime > answered + 0.5,
        30,
        "a periodic snapshot taken after the answer",
        stack,
    )

    # When the stack itself is killed outright (its agent keeps running, orphaned)
    assert stack.process is not None
    stack.process.kill()
    stack.process.wait(30)
    assert _alive(task["pid"])

    # Then the next start stops the orphan, settles the user's row and says so
    stack.start()
    assert "cleaned up 1 agent task(s)" in stack.console()
    await until(lambda: not _alive(task["pid"]), 30, "the orphaned bridge gone", stack)
    await until(lambda: stack.task_state(user_id).get("status") == "Idle", 30, "the row settled", stack)
    # And the agent answers again
    async with ChatClient(stack.endpoints["webSocketUrl"], stack.login()) as tab:
        reply = await tab.reply_to(await tab.send_message("say 4 words"))
        assert reply["content"].endswith("word4")


def _restarting(frame: dict[str, Any]) -> bool:
    return frame.get("status") == "starting" and frame.get("phase") == "restarting"


@pytest.mark.timeout(1200)  # two OpenClaw boots (a start, then a restart), minutes each on a loaded machine
async def test_every_tab_of_the_user_only_sees_each_answer_once_through_a_start_and_an_openclaw_restart(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    user_id, token = stack.endpoints["userId"], stack.login()
    stranger_token = stack.login(*_other_user(stack))
    url = stack.endpoints["webSocketUrl"]
    async with (
        ChatClient(url, token) as laptop,
        ChatClient(url, token) as phone,
        ChatClient(url, stranger_token) as stranger,
    ):
        # Given a first message that wakes the agent up
        first = await laptop.send_message("say 5 words")
        first_ack = await laptop.ack(first)
        assert first_ack["status"] == "starting"
        conversation = first_ack["conversationId"]
        # When a second one is sent from the phone while the agent is still starting
        second = await phone.send_message("say 7 words", conversation)
        second_ack = await phone.ack(second)
        assert second_ack["status"] == "starting"

        # Then both tabs stream both replies, each reply exactly once
        for tab in (laptop, phone):
            for ack, words in ((first_ack, 5), (second_ack, 7)):
                ends = await until(
                    lambda t=tab, a=ack: t.reply_frames(a["messageId"], "stream_end"), 180, "a reply", tab
                )
                assert ends[0]["content"].endswith(f"word{words}")
                assert tab.reply_frames(ack["messageId"], "stream_chunk")
        await asyncio.sleep(2)  # anything duplicated would have arrived by now
        for tab in (laptop, phone):
            assert len(tab.reply_frames(first_ack["messageId"], "stream_end")) == 1
            assert len(tab.reply_frames(second_ack["messageId"], "stream_end")) == 1

        # And the tabs were told the start's phases in order, the image pull (ECS's own events) among them
        phases = [f["phase"] for f in laptop.frames if f.get("type") == "status" and f.get("phase")]
        order = ("provisioning", "pulling", "restoring", "booting")
        assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases), phases
        assert "pulling" in phases and "restoring" in phases, phases
        # And the start's pull is in the user's history, its own phase, for the next start's ETA
        last_start = stack.task_state(user_id)["recentStarts"][-1]["M"]
        assert set(last_start) == set(order) and float(last_start["pulling"]["N"]) >= 0, last_start

        # And the other user saw nothing of it
        assert not [f for f in stranger.frames if f.get("conversationId") == conversation]
        assert not stranger.of_type("stream_chunk") and not stranger.of_type("status")
        # And one task served both, and the history holds exactly one answer per message
        assert len(stack.tasks()) == 1
        history = stack.api("GET", f"/api/conversations/{conversation}/messages", token).json()["items"]
        answers = sorted(m["replyTo"] for m in history if m["role"] == "assistant")
        assert answers == sorted([first_ack["messageId"], second_ack["messageId"]])
        assert (
            stack.api("GET", f"/api/conversations/{conversation}/messages", stranger_token).status_code == 404
        )

        # Given a reply of that agent that is streaming to both tabs of the user
        asked = await laptop.send_message("slowly count to 60")
        message_id = (await laptop.ack(asked))["messageId"]
        await until(lambda: laptop.reply_frames(message_id, "stream_chunk"), 480, "the first chunk", laptop)
        [task] = stack.running_tasks()
        tabs = (laptop, phone)
        before = [len(tab.frames) for tab in tabs]

        # When only OpenClaw dies (the bridge lives on and restarts it)
        killed_at = time.monotonic()
        stack.kill_openclaw(task)

        # Then every tab is told at once that the agent is restarting, with an ETA
        for tab, seen in zip(tabs, before, strict=True):
            told = await until(
                lambda t=tab, n=seen: [
                    f for f in t.frames[n:] if f.get("type") == "status" and _restarting(f)
                ],
                30,
                "the restarting status",
                tab,
            )
            assert told[0]["etaSeconds"] >= 1
        # And asking for the status meanwhile says so too
        status = stack.api("GET", "/api/status", token).json()
        assert _restarting(status) and status["etaSeconds"] >= 1, status

        # And once OpenClaw is back the tabs are told it runs, and the message is answered in full, once
        end = await laptop.reply_to(asked, timeout=600)
        assert end["content"].rstrip().endswith("60")
        restart_seconds = time.monotonic() - killed_at
        for tab, seen in zip(tabs, before, strict=True):
            statuses = [f for f in tab.frames[seen:] if f.get("type") == "status"]
            assert [_restarting(f) for f in statuses[:1]] == [True] and statuses[-1]["status"] == "running"
        await asyncio.sleep(2)  # anything duplicated would have arrived by now
        assert len(laptop.reply_frames(message_id, "stream_end")) == 1
        assert len(phone.reply_frames(message_id, "stream_end")) == 1
        assert not laptop.reply_frames(message_id, "error")
        # And the other user saw none of it either
        assert not stranger.of_type("stream_chunk") and not stranger.of_type("status")
    # And the same task answered it (no replacement), the Inbox is empty and the history holds one answer
    assert len(stack.tasks()) == 1 and stack.running_tasks()[0]["pid"] == task["pid"]
    assert stack.inbox(user_id) == []
    counted = end["conversationId"]
    history = stack.api("GET", f"/api/conversations/{counted}/messages", token).json()["items"]
    assert [m["replyTo"] for m in history if m["role"] == "assistant"] == [message_id]
    assert "restartingUntil" not in stack.task_state(user_id)
    print(f"OpenClaw killed mid-reply: answered {restart_seconds:.1f} s later")


async def test_an_agent_that_cannot_start_gives_up_after_three_attempts_and_says_so(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    user_id = stack.endpoints["userId"]
    # Given an agent image that cannot start (the next three tasks fail)
    stack.fail_next_starts(3)
    async with ChatClient(stack.endpoints["webSocketUrl"], stack.login()) as tab:
        # When the user sends a message
        asked = await tab.send_message("say 3 words")
        await tab.ack(asked)

        # Then they are told, first of each failed start, then that it gave up
        gave_up = await until(
            lambda: [f for f in tab.of_type("error") if f.get("code") == "start_gave_up"],
            180,
            "the notice",
            tab,
        )
        assert "could not be started after 3 attempts" in gave_up[0]["error"]
        assert len([f for f in tab.of_type("error") if f.get("code") == "start_failed"]) == 3
    # And nothing stays Starting, no task runs, and the message is marked failed rather than lost
    assert stack.task_state(user_id)["status"] == "Idle"
    assert not stack.running_tasks()
    tasks = stack.tasks()
    assert len(tasks) == 3 and {t["exitCode"] for t in tasks} == {1}, tasks
    [item] = stack.inbox(user_id)
    assert item["status"] == "failed"


async def test_a_wrong_password_or_a_forged_token_never_gets_a_connection(start_stack: StartStack) -> None:
    stack = start_stack()
    url = stack.endpoints["webSocketUrl"]
    # A wrong password gets no token at all
    cognito = stack.client("cognito-idp")
    with pytest.raises(cognito.exceptions.NotAuthorizedException):
        stack.login(stack.endpoints["username"], "Wrong-password-1")

    real = stack.login()
    claims = jwt.decode(real, options={"verify_signature": False})
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forgeries = {
        "signed by another key": jwt.encode(claims, forger, algorithm="RS256", headers={"kid": "dummy"}),
        "unsigned": jwt.encode(claims, None, algorithm="none"),
        "tampered sub": _tamper(real),
        "expired": jwt.encode(
            {**claims, "exp": int(time.time()) - 3600}, forger, algorithm="RS256", headers={"kid": "dummy"}
        ),
        "empty": "",
    }
    for what, token in forgeries.items():
        # Then the WebSocket upgrade is refused with 401
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"{url}?token={token}"):
                pass
        assert refused.value.response.status_code == 401, what
        # And the HTTP API refuses it before any function runs
        assert stack.api("GET", "/api/status", token).status_code == 401, what

    # And nothing was written for any of them, while the real token works
    connections = stack.client("dynamodb").scan(TableName=stack.table("CONNECTIONS_TABLE"))["Items"]
    assert connections == []
    async with ChatClient(url, real):
        assert stack.api("GET", "/api/status", real).status_code == 200


async def test_bad_input_is_refused_at_the_edges_writes_nothing_and_the_connection_goes_on(
    start_stack: StartStack,
) -> None:
    # Given a signed-in browser tab on the running stack
    stack = start_stack()
    token = stack.login()
    deep = "[" * 5000 + "]" * 5000
    bad_frames = {
        "nested thousands deep": '{"action":"ping","x":' + deep + "}",
        "NUL in the text": json.dumps(
            {"action": "sendMessage", "message": "a\x00b", "clientMessageId": "b1"}
        ),
        "lone surrogate": '{"action":"sendMessage","message":"\\ud800","clientMessageId":"b2"}',
        "40-digit number": '{"action":"ping","x":' + "9" * 40 + "}",
    }
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        assert tab.ws is not None
        for sent, (what, raw) in enumerate(bad_frames.items(), start=1):
            # When a bad frame is sent, followed by a good one on the same connection
            await tab.ws.send(raw)
            await tab.ws.send('{"action":"ping"}')
            # Then the bad one gets an error frame and the good one its answer
            await until(
                lambda n=sent: len(tab.of_type("error")) == len(tab.of_type("pong")) == n, 30, what, tab
            )
        errors = tab.of_type("error")
        assert [e["code"] for e in errors] == ["bad_request", "invalid_text", "bad_request", "bad_request"]
        assert not any("retryable" in e for e in errors)

    # And the HTTP API refuses the same kinds of body with 400
    for body in ('{"timezone":' + deep + "}", '{"timezone":"Europe/\\ud800"}', '{"idleTimeoutMinutes":NaN}'):
        response = stack.api("PUT", "/api/settings", token, content=body)
        assert response.status_code == 400, body
    assert stack.api("PUT", "/api/settings", token, json={"timezone": "Asia/Tokyo"}).status_code == 200

    # And nothing but that one good setting was written, and no agent was started
    dynamodb = stack.client("dynamodb")
    for table in ("INBOX_TABLE", "CONVERSATIONS_TABLE", "IDEMPOTENCY_TABLE", "TASK_STATE_TABLE"):
        assert dynamodb.scan(TableName=stack.table(table))["Items"] == [], table
    assert stack.tasks() == []


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan killed in a container without an init is never reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _other_user(stack: LocalStackProcess) -> tuple[str, str]:
    username, password = "stranger@example.com", "Stranger-pass-123"
    stack.create_user(username, password)
    return username, password


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = "someone-else"
    forged_payload = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    return f"{header}.{forged_payload}.{signature}"


def test_invoke_runs_one_function_with_a_sample_event_against_the_running_stack(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    # When the watchdog is invoked by hand with its sample event (what `make invoke` does)
    done = _invoke(stack, "WatchdogFunction", "events/watchdog_schedule.json")
    # Then it ran against the stack's tables (nothing to do: no agent) and printed its result as JSON
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"actions": []}
    # And an unknown function is named as such, with the ones that exist
    unknown = _invoke(stack, "NoSuchFunction", "events/watchdog_schedule.json")
    assert unknown.returncode == 2 and "WatchdogFunction" in unknown.stderr


def _invoke(stack: LocalStackProcess, function: str, event: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "local",
        "invoke",
        function,
        "-e",
        event,
        "--state-dir",
        str(stack.state_dir),
    ]
    # A person's shell may hold a real AWS session: none of it may reach what the stand-ins verify.
    env = {**user_environment(), "AWS_SESSION_TOKEN": "real", "AWS_SECURITY_TOKEN": "real"}
    return subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.timeout(900)  # three starts of the stack and three boots of OpenClaw
async def test_a_restart_keeps_everything_and_a_crash_of_the_whole_stack_loses_nothing_it_acknowledged(
    start_stack: StartStack,
) -> None:
    # Given a user other than the demo user, with a conversation in which the agent wrote a file
    stack = start_stack()
    demo_user_id, demo_password = stack.endpoints["userId"], stack.endpoints["password"]
    username, password = _other_user(stack)
    token = stack.login(username, password)
    user_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        created = await tab.reply_to(await tab.send_message("create file notes.md with the text crash-proof"))
    conversation = created["conversationId"]

    # When the stack is stopped with Ctrl-C (the agent is still running) and started again
    assert stack.stop() == 0
    assert "final backup" in stack.console()
    stack.start()

    # Then the demo login and every user's id and history are kept
    assert stack.endpoints["password"] == demo_password and stack.endpoints["userId"] == demo_user_id
    token = stack.login(username, password)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == user_id
    listed = stack.api("GET", "/api/conversations", token).json()["items"]
    assert conversation in [c["conversationId"] for c in listed]
    history = stack.api("GET", f"/api/conversations/{conversation}/messages", token)
    assert history.status_code == 200 and len(history.json()["items"]) == 2
    assert {m["role"] for m in history.json()["items"]} == {"user", "assistant"}
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # And the agent, started afresh, finds its file
        shown = await tab.reply_to(await tab.send_message("show notes.md", conversation))
        assert "crash-proof" in shown["content"]

        # Given a file of the agent's that S3 confirmed (the backup after an answer) ...
        changed = "create file notes.md with the text written just before the crash"
        await tab.reply_to(await tab.send_message(changed, conversation))
        await until(
            lambda: stack.workspace_file(user_id, "notes.md") == b"written just before the crash",
            60,
            "the backup of notes.md in S3",
            stack,
        )
        # ... and a message the stack has just acknowledged, its agent still answering it
        asked = await tab.send_message("slowly count to 30", conversation)
        message_id = (await tab.ack(asked))["messageId"]
        lost_task = stack.task_state(user_id)["taskArn"]

        # When the whole stack is killed at once (no final snapshot, no graceful stop) and started again
        stack.crash()
    restarted = time.monotonic()
    stack.start()

    # Then the user keeps their id, the message, its history row and the file are all there ...
    token = stack.login(username, password)
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == user_id

    def history() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = stack.api(
            "GET", f"/api/conversations/{conversation}/messages", token
        ).json()["items"]
        return rows

    def answered() -> bool:
        return any(row["role"] == "assistant" and row.get("replyTo") == message_id for row in history())

    # (the message leaves the Inbox once answered, and a new agent may already have answered it)
    [queued] = [item for item in stack.inbox(user_id) if item["messageId"] == message_id] or [{}]
    assert queued or answered()
    assert message_id in [row["messageId"] for row in history() if row["role"] == "user"]
    assert stack.workspace_file(user_id, "notes.md") == b"written just before the crash"
    # ... and by the time the stack is up, the lost task's claim is released and a new agent is starting
    # for the message (not after the claim's 120 s lease and a watchdog sweep) ...
    assert queued.get("claimedBy") != lost_task
    state = stack.task_state(user_id)
    assert state.get("taskArn") != lost_task and state.get("status") in ("Starting", "Running")
    assert time.monotonic() - restarted < 60
    # ... which answers it, and restores the file from S3
    await until(answered, 240, "the answer to the message acknowledged before the crash", stack)
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        shown = await tab.reply_to(await tab.send_message("show notes.md", conversation))
        assert "written just before the crash" in shown["content"]


async def test_a_bridge_frozen_mid_reply_and_replaced_by_the_watchdog_never_answers_twice(
    start_stack: StartStack,
) -> None:
    # The watchdog runs every 2 s and judges a heartbeat stale after 60 s (the template's minimum).
    stack = start_stack("--schedule-every", "2", "--parameter", "HeartbeatStaleSeconds=60")
    user_id, token = stack.endpoints["userId"], stack.login()
    async with ChatClient(stack.endpoints["webSocketUrl"], token) as tab:
        # Given a long reply that is streaming
        asked = await tab.send_message("slowly count to 250")
        ack = await tab.ack(asked)
        message_id, conversation = ack["messageId"], ack["conversationId"]
        await until(lambda: tab.reply_frames(message_id, "stream_chunk"), 180, "the first chunk", tab)
        [frozen] = stack.running_tasks()

        # When its bridge freezes (no heartbeat, no lease renewal) until the watchdog has replaced it and
        # the replacement holds the message, and then wakes up again
        os.kill(frozen["pid"], signal.SIGSTOP)
        try:
            # (as if the freeze had outlasted the heartbeat limit and the lease, without waiting them out)
            _backdate(stack, "TASK_STATE_TABLE", {"PK": {"S": f"USER#{user_id}"}}, "heartbeatAt", 3600)
            for item in stack.inbox(user_id):
                key = {"PK": {"S": item["PK"]}, "SK": {"S": item["SK"]}}
                _backdate(stack, "INBOX_TABLE", key, "claimExpiresAt", 1)
            await until(
                lambda: any(
                    item.get("claimedBy") not in (None, frozen["taskArn"]) for item in stack.inbox(user_id)
                ),
                300,
                "the replacement's claim",
                stack,
            )
        finally:
            os.kill(frozen["pid"], signal.SIGCONT)

        # Then, once the message is settled and the woken bridge gone, it was answered in full, once:
        # one stream_end on the tab, one row in the history
        await until(lambda: not stack.inbox(user_id), 300, "the message settled", stack)
        await until(
            lambda: frozen["taskArn"] not in {t["taskArn"] for t in stack.running_tasks()},
            200,
            "the frozen bridge's exit",
            stack,
        )
        await asyncio.sleep(2)  # anything still on its way would have arrived by now
        ends = tab.reply_frames(message_id, "stream_end")
        assert len(ends) == 1, ends
        assert ends[0]["content"].rstrip().endswith("250")
    history = stack.api("GET", f"/api/conversations/{conversation}/messages", token).json()["items"]
    assert [m["replyTo"] for m in history if m["role"] == "assistant"] == [message_id]


@pytest.mark.timeout(900)  # three boots of OpenClaw
async def test_a_killed_bridge_loses_no_reported_file_and_no_message_it_was_answering(
    start_stack: StartStack,
) -> None:
    stack = start_stack()
    user_id = stack.endpoints["userId"]
    async with ChatClient(stack.endpoints["webSocketUrl"], stack.login()) as tab:
        # Given the agent reported a file written
        created = await tab.reply_to(await tab.send_message("create file kept.md with the text kept 1 s"))
        assert "Created kept.md" in created["content"]

        # When its bridge is killed outright one second later
        await asyncio.sleep(1)
        [task] = stack.running_tasks()
        os.kill(task["pid"], signal.SIGKILL)

        # Then the file is in S3, and the next task restores it
        assert stack.workspace_file(user_id, "kept.md") == b"kept 1 s"
        await until(lambda: not stack.running_tasks(), 60, "the killed task's end", stack)
        shown = await tab.reply_to(await tab.send_message("show kept.md", created["conversationId"]))
        assert "kept 1 s" in shown["content"]

        # Given a reply of that task that is streaming
        asked = await tab.send_message("slowly count to 40")
        message_id = (await tab.ack(asked))["messageId"]
        await until(lambda: tab.reply_frames(message_id, "stream_chunk"), 180, "the first chunk", tab)
        [task] = stack.running_tasks()

        # When the bridge is killed outright (no SIGTERM, no final words)
        os.kill(task["pid"], signal.SIGKILL)

        # Then the STOPPED event starts another task at once, which answers the message in full
        end = await tab.reply_to(asked)
        assert end["content"].rstrip().endswith("40")
    tasks = stack.tasks()
    assert len(tasks) == 3, tasks
    assert [(t["exitCode"], t["stopCode"]) for t in tasks[:2]] == [(137, "EssentialContainerExited")] * 2
    assert stack.inbox(user_id) == []
