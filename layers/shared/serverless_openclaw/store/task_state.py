"""TaskState table: one row per user, changed only by conditional writes on `version`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.lifecycle import Capacity, Status, TaskState
from serverless_openclaw.store import codec
from serverless_openclaw.store.conditions import condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

_ATTRS = {
    "status",
    "version",
    "taskArn",
    "capacity",
    "agentConnectionId",
    "agentTokenHash",
    "startedAt",
    "heartbeatAt",
    "lastActivity",
    "changedAt",
    "busy",
    "startAttempts",
    "lastError",
    "restartingUntil",
    "warmSince",
}


def user_key(user_id: str) -> dict[str, AttributeValueTypeDef]:
    """The TaskState key of a user."""
    return {"PK": {"S": f"USER#{user_id}"}}


def from_item(item: Mapping[str, Any]) -> TaskState:
    """A loaded TaskState item → TaskState; a value this version cannot read never blocks the row.

    Rows outlive deploys: one written by an older version (or a newer one, before a rollback) may lack an
    attribute, carry one no code reads any more, or hold a status or shape this version does not know.
    Each is read as the nearest state the lifecycle rules can settle on their own (docs/decisions.md).
    """
    return TaskState(
        user_id=str(item["PK"]).removeprefix("USER#"),
        status=_status(item.get("status")),
        version=int(item.get("version", 0)),
        task_arn=_text(item.get("taskArn")),
        capacity=_capacity(item.get("capacity")),
        agent_connection_id=_text(item.get("agentConnectionId")),
        agent_token_hash=_text(item.get("agentTokenHash")),
        started_at=_seconds(item.get("startedAt")),
        heartbeat_at=_seconds(item.get("heartbeatAt")),
        last_activity=_seconds(item.get("lastActivity")),
        changed_at=_seconds(item.get("changedAt")),
        busy=item.get("busy") is True,
        start_attempts=_count(item.get("startAttempts")),
        last_error=_text(item.get("lastError")),
        restarting_until=_seconds(item.get("restartingUntil")),
        warm_since=_seconds(item.get("warmSince")),
    )


def _status(value: Any) -> Status:
    """The row's status; one this version does not know counts as Stopping: the task it names is on its
    way out, messages wait, and the watchdog settles the row once the stopping deadline has passed."""
    if value is None:
        return Status.IDLE
    try:
        return Status(value)
    except ValueError:
        return Status.STOPPING


def _capacity(value: Any) -> Capacity | None:
    """The capacity provider of the row's task; None when absent or not one this version starts on."""
    try:
        return Capacity(value) if value else None
    except ValueError:
        return None


def _seconds(value: Any) -> float | None:
    """An epoch time in seconds; None when absent or not a number (a time nobody can read is no time)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> int:
    """A non-negative counter; 0 when absent or unreadable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(0, int(value))


def _text(value: Any) -> str | None:
    """A string attribute; None when absent or of another type."""
    return value if isinstance(value, str) and value else None


def _update(
    set_: Mapping[str, Any], remove: tuple[str, ...], *more_sets: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """UpdateExpression, names and values that set `set_` (a None value removes) and remove `remove`."""
    unknown = (set(set_) | set(remove)) - _ATTRS
    if unknown:
        raise ValueError(f"unknown TaskState attributes: {sorted(unknown)}")
    kept = {k: v for k, v in set_.items() if v is not None}
    removals = [*remove, *(k for k, v in set_.items() if v is None)]
    expression = "SET " + ", ".join([*(f"#{k} = :{k}" for k in kept), *more_sets])
    if removals:
        expression += " REMOVE " + ", ".join(f"#{k}" for k in removals)
    return expression, {f"#{k}": k for k in (*set_, *remove)}, {f":{k}": v for k, v in kept.items()}


class TaskStateStore:
    """Reads and conditional writes of the TaskState table."""

    def __init__(self, table: str) -> None:
        self.table = table

    def get(self, user_id: str, *, consistent: bool = True) -> TaskState:
        """The user's state (Idle, version 0 when the row does not exist)."""
        resp = client("dynamodb").get_item(
            TableName=self.table, Key=user_key(user_id), ConsistentRead=consistent
        )
        item = codec.load(resp.get("Item"))
        return from_item(item) if item else TaskState(user_id=user_id)

    def touch_activity(self, user_id: str, now: float) -> TaskState:
        """Record user activity and return the current state in the same round trip; a task woken without
        a message (`warmSince`) now has one, so the user's normal idle timeout applies to it from here."""
        resp = client("dynamodb").update_item(
            TableName=self.table,
            Key=user_key(user_id),
            UpdateExpression="SET lastActivity = :now, version = if_not_exists(version, :zero), "
            "#s = if_not_exists(#s, :idle) REMOVE warmSince",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=codec.values({":now": now, ":zero": 0, ":idle": Status.IDLE.value}),
            ReturnValues="ALL_NEW",
        )
        return from_item(codec.load(resp["Attributes"]) or {})

    def transition(
        self,
        current: TaskState,
        to: Status,
        now: float,
        *,
        set_: Mapping[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> TaskState | None:
        """Move to `to` only if nobody changed the row since `current` was read; None if we lost."""
        set_ = {**(set_ or {}), "status": to.value, "version": current.version + 1, "changedAt": now}
        expression, names, vals = _update(set_, remove)
        vals[":expected"] = current.version
        condition = "#version = :expected"
        if current.version == 0:
            condition = "attribute_not_exists(PK) OR attribute_not_exists(#version) OR #version = :expected"
        try:
            resp = client("dynamodb").update_item(
                TableName=self.table,
                Key=user_key(current.user_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=codec.values(vals),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if condition_failed(exc):
                return None
            raise
        return from_item(codec.load(resp["Attributes"]) or {})

    def _conditional_update(
        self, user_id: str, expression: str, condition: str, names: dict[str, str], vals: dict[str, Any]
    ) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key=user_key(user_id),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=codec.values(vals),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def record_launch(self, state: TaskState, task_arn: str, capacity: Capacity) -> bool:
        """Attach the launched task to the Starting row we own (same version, still Starting)."""
        return self._conditional_update(
            state.user_id,
            "SET taskArn = :arn, #cap = :cap",
            "#v = :v AND #s = :starting",
            {"#s": "status", "#cap": "capacity", "#v": "version"},
            {
                ":arn": task_arn,
                ":cap": capacity.value,
                ":v": state.version,
                ":starting": Status.STARTING.value,
            },
        )

    def attach_agent(
        self, user_id: str, task_arn: str, connection_id: str, now: float, token_hash: str | None = None
    ) -> bool:
        """Record the bridge's agent connection, only for the task (and token) the row references."""
        condition = "taskArn = :arn AND #s IN (:starting, :running)"
        vals: dict[str, Any] = {
            ":c": connection_id,
            ":now": now,
            ":arn": task_arn,
            ":starting": Status.STARTING.value,
            ":running": Status.RUNNING.value,
        }
        if token_hash is not None:
            # The token checked at $connect must still be the current one when the connection is attached.
            condition += " AND agentTokenHash = :hash"
            vals[":hash"] = token_hash
        return self._conditional_update(
            user_id, "SET agentConnectionId = :c, heartbeatAt = :now", condition, {"#s": "status"}, vals
        )

    def register_agent_token(self, user_id: str, task_arn: str, token_hash: str) -> bool:
        """The bridge stores its self-generated agent token's hash, only on the row naming its task."""
        return self._conditional_update(
            user_id,
            "SET agentTokenHash = :hash",
            "taskArn = :arn AND #s IN (:starting, :running)",
            {"#s": "status"},
            {
                ":hash": token_hash,
                ":arn": task_arn,
                ":starting": Status.STARTING.value,
                ":running": Status.RUNNING.value,
            },
        )

    def detach_agent(self, user_id: str, connection_id: str) -> bool:
        """Forget the agent connection only if it is still the current one."""
        return self._conditional_update(
            user_id,
            "REMOVE agentConnectionId",
            "agentConnectionId = :c",
            {},
            {":c": connection_id},
        )

    def heartbeat(self, user_id: str, task_arn: str, busy: bool, now: float) -> bool:
        """A live bridge reports in; refused when the row no longer references its task."""
        return self._conditional_update(
            user_id,
            "SET heartbeatAt = :now, busy = :busy",
            "taskArn = :arn",
            {},
            {":now": now, ":busy": busy, ":arn": task_arn},
        )

    def mark_restarting(self, user_id: str, task_arn: str, until: float | None) -> bool:
        """A Running bridge says its gateway is restarting (back by `until`), or back (None); refused once
        the row no longer names its task or is no longer Running."""
        vals: dict[str, Any] = {":arn": task_arn, ":running": Status.RUNNING.value}
        expression = "REMOVE restartingUntil"
        if until is not None:
            expression, vals[":until"] = "SET restartingUntil = :until", until
        return self._conditional_update(
            user_id, expression, "taskArn = :arn AND #s = :running", {"#s": "status"}, vals
        )

    def stop_unused_warm(self, user_id: str, task_arn: str, seen: TaskState, now: float) -> bool:
        """Running → Stopping for a task woken without a message, only while it still is (`warmSince`)
        and nobody wrote meanwhile (`lastActivity` as `seen`); refused once a message came or the row
        names another task, so a message racing the stop keeps its agent or waits for the next one."""
        vals: dict[str, Any] = {
            ":arn": task_arn,
            ":running": Status.RUNNING.value,
            ":stopping": Status.STOPPING.value,
            ":now": now,
            ":one": 1,
        }
        condition = "taskArn = :arn AND #s = :running AND attribute_exists(warmSince)"
        if seen.last_activity is None:
            condition += " AND attribute_not_exists(lastActivity)"
        else:
            condition += " AND lastActivity = :last"
            vals[":last"] = seen.last_activity
        return self._conditional_update(
            user_id,
            "SET #s = :stopping, changedAt = :now, #v = #v + :one",
            condition,
            {"#s": "status", "#v": "version"},
            vals,
        )

    def names_task(self, user_id: str, task_arn: str) -> bool:
        """Whether the row still names this task (a strongly consistent read)."""
        return self.get(user_id).task_arn == task_arn

    def names_task_check(self, user_id: str, task_arn: str) -> TransactWriteItemTypeDef:
        """A transaction item that holds only while the row names this task (a `ConditionCheck`)."""
        return {
            "ConditionCheck": {
                "TableName": self.table,
                "Key": user_key(user_id),
                "ConditionExpression": "taskArn = :arn",
                "ExpressionAttributeValues": codec.values({":arn": task_arn}),
            }
        }

    def settle_own(
        self,
        user_id: str,
        task_arn: str,
        to: Status,
        now: float,
        *,
        from_: tuple[Status, ...],
        set_: Mapping[str, Any] | None = None,
        remove: tuple[str, ...] = (),
    ) -> bool:
        """A bridge moves the row of its own task (e.g. Starting → Running); refused once it names another."""
        set_ = {**(set_ or {}), "status": to.value, "changedAt": now}
        expression, names, vals = _update(set_, remove, "#version = #version + :one")
        names.update({"#version": "version", "#taskArn": "taskArn", "#status": "status"})
        allowed = {f":from{i}": status.value for i, status in enumerate(from_)}
        vals.update({**allowed, ":one": 1, ":arn": task_arn})
        condition = f"#taskArn = :arn AND #status IN ({', '.join(allowed)})"
        return self._conditional_update(user_id, expression, condition, names, vals)

    def scan(self) -> Iterator[TaskState]:
        """Every row (one per user: small by design)."""
        return map(from_item, self._scan_items())

    def scan_states(self, malformed: Callable[[Mapping[str, Any]], None]) -> Iterator[TaskState]:
        """Every row that parses; one that does not is handed to `malformed` (while its error is being
        handled, so it can be logged with its traceback) and skipped: a sweep survives one bad row."""
        for item in self._scan_items():
            try:
                state = from_item(item)
            except (KeyError, ValueError, TypeError):
                malformed(item)
                continue
            yield state

    def _scan_items(self) -> Iterator[dict[str, Any]]:
        paginator = client("dynamodb").get_paginator("scan")
        for page in paginator.paginate(TableName=self.table, ConsistentRead=True):
            for raw in page.get("Items", []):
                item = codec.load(raw)
                if item:
                    yield item

    def find_by_task(self, task_arn: str) -> TaskState | None:
        """The row that references a task, if any."""
        return next((s for s in self.scan() if s.task_arn == task_arn), None)
