"""Inbox table: every user message is queued here before anything else; a bridge leases, answers, deletes.

An item is `queued`, `claimed` (leased by one bridge until `claimExpiresAt`) or `failed` (given up on,
with the user told). A claim whose lease ran out counts as queued again, so a crashed bridge loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.message_order import claimable
from serverless_openclaw.messages import InboxItem
from serverless_openclaw.store import codec
from serverless_openclaw.store.conditions import condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef

FAILED_RETENTION_SECONDS = 14 * 24 * 3600
"""Failed items stay visible for two weeks, then expire."""


def new_item(item: InboxItem) -> dict[str, AttributeValueTypeDef]:
    """The DynamoDB item for a freshly queued message (used inside transactions)."""
    return codec.dump(
        {
            "PK": f"USER#{item.user_id}",
            "SK": f"MSG#{item.message_id}",
            "messageId": item.message_id,
            "text": item.text,
            "channel": item.channel,
            "conversationId": item.conversation_id,
            "clientMessageId": item.client_message_id,
            "replyTo": dict(item.reply_to) or None,
            "status": "queued",
            "attempts": 0,
            "createdAt": item.created_at,
        }
    )


class Settled(Enum):
    """How the one transaction that records an answer and settles its Inbox item ended."""

    DONE = "done"
    """The reply is stored and the item settled (deleted, or marked failed)."""
    LOST = "lost"
    """Nothing written: the claim (or a guard, such as TaskState naming this task) no longer holds."""
    ANSWERED_BEFORE = "answered_before"
    """Nothing written: we still hold the item, but its reply row already exists."""


_HELD = "#s = :claimed AND claimedBy = :me AND claimExpiresAt > :now"
"""Our claim, and its lease not run out: only then may a bridge record an answer."""


def _from_item(item: Mapping[str, Any]) -> InboxItem:
    return InboxItem(
        user_id=str(item["PK"]).removeprefix("USER#"),
        message_id=str(item["SK"]).removeprefix("MSG#"),
        text=item.get("text", ""),
        channel=item.get("channel", "web"),
        conversation_id=item.get("conversationId", ""),
        created_at=float(item.get("createdAt", 0)),
        client_message_id=item.get("clientMessageId"),
        reply_to=item.get("replyTo") or {},
        status=item.get("status", "queued"),
        claimed_by=item.get("claimedBy"),
        claim_expires_at=item.get("claimExpiresAt"),
        attempts=int(item.get("attempts", 0)),
        last_error=item.get("lastError"),
    )


def _key(user_id: str, message_id: str) -> dict[str, AttributeValueTypeDef]:
    return {"PK": {"S": f"USER#{user_id}"}, "SK": {"S": f"MSG#{message_id}"}}


class InboxStore:
    """Queue operations on the Inbox table."""

    def __init__(self, table: str) -> None:
        self.table = table

    def items(self, user_id: str) -> list[InboxItem]:
        """All of a user's items, oldest first."""
        paginator = client("dynamodb").get_paginator("query")
        found: list[InboxItem] = []
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :msg)",
            ExpressionAttributeValues=codec.values({":pk": f"USER#{user_id}", ":msg": "MSG#"}),
            ConsistentRead=True,
        ):
            found.extend(_from_item(codec.load(raw) or {}) for raw in page.get("Items", []))
        return found

    def pending(self, user_id: str, now: float) -> list[InboxItem]:
        """Items that still need an answer (queued or with an expired lease), oldest first."""
        return [item for item in self.items(user_id) if item.available(now)]

    def claim_next(self, user_id: str, claimer: str, now: float, lease_seconds: int) -> InboxItem | None:
        """Lease the next item to answer to `claimer` (message_order.py); None when there is nothing to do."""
        for item in claimable(self.items(user_id), now):
            try:
                resp = client("dynamodb").update_item(
                    TableName=self.table,
                    Key=_key(user_id, item.message_id),
                    UpdateExpression="SET #s = :claimed, claimedBy = :me, claimExpiresAt = :exp, "
                    "attempts = if_not_exists(attempts, :zero) + :one",
                    ConditionExpression="#s = :queued OR (#s = :claimed AND claimExpiresAt <= :now)",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues=codec.values(
                        {
                            ":claimed": "claimed",
                            ":queued": "queued",
                            ":me": claimer,
                            ":exp": now + lease_seconds,
                            ":now": now,
                            ":zero": 0,
                            ":one": 1,
                        }
                    ),
                    ReturnValues="ALL_NEW",
                )
            except ClientError as exc:
                if condition_failed(exc):
                    continue  # another bridge took it, or it was answered meanwhile: try another conversation
                raise
            return _from_item(codec.load(resp["Attributes"]) or {})
        return None

    def _owned_update(self, item: InboxItem, claimer: str, expression: str, vals: dict[str, Any]) -> bool:
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key=_key(item.user_id, item.message_id),
                UpdateExpression=expression,
                ConditionExpression="#s = :claimed AND claimedBy = :me",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=codec.values({":claimed": "claimed", ":me": claimer, **vals}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def renew(self, item: InboxItem, claimer: str, now: float, lease_seconds: int) -> bool:
        """Extend our lease during a long run; False if we no longer hold it."""
        return self._owned_update(item, claimer, "SET claimExpiresAt = :exp", {":exp": now + lease_seconds})

    def release(self, item: InboxItem, claimer: str) -> bool:
        """Give an unanswered item back to the queue (shutdown, abort)."""
        return self._owned_update(
            item, claimer, "SET #s = :queued REMOVE claimedBy, claimExpiresAt", {":queued": "queued"}
        )

    def complete(self, item: InboxItem, claimer: str) -> bool:
        """Delete an answered item we hold."""
        try:
            client("dynamodb").delete_item(
                TableName=self.table,
                Key=_key(item.user_id, item.message_id),
                ConditionExpression="claimedBy = :me",
                ExpressionAttributeValues=codec.values({":me": claimer}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def settle(
        self,
        item: InboxItem,
        claimer: str,
        now: float,
        *,
        reply: Sequence[TransactWriteItemTypeDef],
        guards: Sequence[TransactWriteItemTypeDef] = (),
        failed: str | None = None,
    ) -> Settled:
        """Store the reply (`reply`'s items) and delete the item (or mark it failed) in ONE transaction.

        It commits only while `claimer` holds an unexpired lease on the item and every guard holds, so a
        bridge that lost the item (frozen, superseded) can never record a second answer.
        """
        inbox_write: TransactWriteItemTypeDef
        held: dict[str, Any] = {":claimed": "claimed", ":me": claimer, ":now": now}
        if failed is None:
            inbox_write = {
                "Delete": {
                    "TableName": self.table,
                    "Key": _key(item.user_id, item.message_id),
                    "ConditionExpression": _HELD,
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": codec.values(held),
                }
            }
        else:
            inbox_write = {
                "Update": {
                    "TableName": self.table,
                    "Key": _key(item.user_id, item.message_id),
                    "UpdateExpression": "SET #s = :failed, lastError = :why, #ttl = :ttl "
                    "REMOVE claimedBy, claimExpiresAt",
                    "ConditionExpression": _HELD,
                    "ExpressionAttributeNames": {"#s": "status", "#ttl": "ttl"},
                    "ExpressionAttributeValues": codec.values(
                        {
                            **held,
                            ":failed": "failed",
                            ":why": failed[:500],
                            ":ttl": int(now) + FAILED_RETENTION_SECONDS,
                        }
                    ),
                }
            }
        try:
            client("dynamodb").transact_write_items(TransactItems=[inbox_write, *guards, *reply])
        except ClientError as exc:
            if any(condition_failed(exc, item=index) for index in range(1 + len(guards))):
                return Settled.LOST
            if condition_failed(exc):
                return Settled.ANSWERED_BEFORE
            raise
        return Settled.DONE

    def mark_failed(self, item: InboxItem, reason: str, now: float) -> bool:
        """Give up on an item that is not answered yet; it stays visible (and expires) as `failed`."""
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key=_key(item.user_id, item.message_id),
                UpdateExpression="SET #s = :failed, lastError = :why, #ttl = :ttl "
                "REMOVE claimedBy, claimExpiresAt",
                ConditionExpression="attribute_exists(PK) AND #s <> :failed",
                ExpressionAttributeNames={"#s": "status", "#ttl": "ttl"},
                ExpressionAttributeValues=codec.values(
                    {":failed": "failed", ":why": reason[:500], ":ttl": int(now) + FAILED_RETENTION_SECONDS}
                ),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def set_reply_field(self, user_id: str, message_id: str, key: str, value: Any) -> bool:
        """Add to a still-queued item's `replyTo` (the Telegram placeholder the bridge edits into the answer).

        False when the item is already claimed or gone: the bridge read `replyTo` without it.
        """
        try:
            client("dynamodb").update_item(
                TableName=self.table,
                Key=_key(user_id, message_id),
                UpdateExpression="SET replyTo.#k = :v",
                ConditionExpression="attribute_exists(PK) AND #s = :queued AND attribute_exists(replyTo)",
                ExpressionAttributeNames={"#k": key, "#s": "status"},
                ExpressionAttributeValues=codec.values({":v": value, ":queued": "queued"}),
            )
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def fail_pending(self, user_id: str, reason: str, now: float) -> list[InboxItem]:
        """Mark every still-unanswered item failed; returns those marked."""
        return [item for item in self.pending(user_id, now) if self.mark_failed(item, reason, now)]

    def users_with_pending(self, now: float) -> Iterator[str]:
        """Users that have at least one item waiting for an answer."""
        paginator = client("dynamodb").get_paginator("scan")
        seen: set[str] = set()
        for page in paginator.paginate(
            TableName=self.table,
            ProjectionExpression="PK, #s, claimExpiresAt",
            ExpressionAttributeNames={"#s": "status"},
            ConsistentRead=True,
        ):
            for raw in page.get("Items", []):
                item = codec.load(raw) or {}
                user_id = str(item["PK"]).removeprefix("USER#")
                waiting = item.get("status") == "queued" or (
                    item.get("status") == "claimed" and (item.get("claimExpiresAt") or 0) <= now
                )
                if waiting and user_id not in seen:
                    seen.add(user_id)
                    yield user_id
