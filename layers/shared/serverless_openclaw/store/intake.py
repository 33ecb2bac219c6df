"""Accepting a user message: dedup, history and queue written in ONE transaction, before anything else.

The Idempotency row (Powertools layout: `id`, `status`, `data`, `ttl` as the expiry attribute), the
conversation header, the stored user message and the Inbox item either all exist or none does, so a
retried request can never find "already seen" for a message that was not queued.

A message that names the one it follows (`IncomingMessage.follows`) carries a condition in the same
transaction: that message's Idempotency row exists with a smaller message id. So messages sent back to
back, whose requests race each other, are stored (and get ids) in the order they were typed, at no extra
call; one that overtook its predecessor is refused with `OutOfOrder` and sent again by its sender.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.config import Tables
from serverless_openclaw.messages import Accepted, InboxItem, IncomingMessage, OutOfOrder
from serverless_openclaw.store import codec, conversations, inbox
from serverless_openclaw.store.conditions import condition_failed
from serverless_openclaw.store.ids import new_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import ConditionCheckTypeDef, PutTypeDef, TransactWriteItemTypeDef

IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600


class IntakeStore:
    """The one write path for new user messages."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def accept(self, message: IncomingMessage, now: float) -> Accepted:
        """Store the message in Conversations and the Inbox (once per idempotency key).

        Raises OutOfOrder, storing nothing, when the message it follows is not stored before it.
        """
        message_id = new_id()
        conversation_id = message.conversation_id or new_id()
        queued = InboxItem(
            user_id=message.user_id,
            message_id=message_id,
            text=message.text,
            channel=message.channel,
            conversation_id=conversation_id,
            created_at=now,
            client_message_id=message.client_message_id,
            reply_to=message.reply_to or {},
        )
        items: list[TransactWriteItemTypeDef] = []
        if message.idempotency_key:
            record = {"messageId": message_id, "conversationId": conversation_id}
            items.append({"Put": self._first_time(message.idempotency_key, record, now, message_id)})
        follows_at = len(items)
        if message.follows:
            items.append({"ConditionCheck": self._stored_before(message.follows, message_id)})
        items += [
            conversations.header_update(
                self.tables.conversations,
                message.user_id,
                conversation_id,
                conversations.title_from(message.text),
                now,
            ),
            {
                "Put": {
                    "TableName": self.tables.conversations,
                    "Item": conversations.message_item(
                        message.user_id,
                        conversation_id,
                        message_id,
                        "user",
                        message.text,
                        message.channel,
                        now,
                    ),
                }
            },
            {"Put": {"TableName": self.tables.inbox, "Item": inbox.new_item(queued)}},
        ]
        try:
            client("dynamodb").transact_write_items(TransactItems=items)
        except ClientError as exc:
            # The Idempotency record (the first item) failing its condition means "seen before"; a seen
            # message is answered as such even if it also overtook its predecessor.
            if message.idempotency_key and condition_failed(exc, item=0):
                return self._previous(message.idempotency_key)
            if message.follows and condition_failed(exc, item=follows_at):
                raise OutOfOrder(message.follows) from None
            raise
        return Accepted(message_id=message_id, conversation_id=conversation_id)

    def _first_time(
        self, key: str, data: dict[str, Any], now: float, message_id: str | None = None
    ) -> PutTypeDef:
        """The Put of an Idempotency record (Powertools layout) that fails if `key` was seen before.

        A stored message's id is also a top-level attribute, so a later message's condition can compare it.
        """
        return {
            "TableName": self.tables.idempotency,
            "Item": codec.dump(
                {
                    "id": key,
                    "status": "COMPLETED",
                    "data": json.dumps(data),
                    "ttl": int(now) + IDEMPOTENCY_TTL_SECONDS,
                    "messageId": message_id,
                }
            ),
            "ConditionExpression": "attribute_not_exists(id)",
        }

    def _stored_before(self, key: str, message_id: str) -> ConditionCheckTypeDef:
        """A condition that holds once the message of `key` is stored with an id before `message_id`."""
        return {
            "TableName": self.tables.idempotency,
            "Key": {"id": {"S": key}},
            "ConditionExpression": "attribute_exists(id) AND messageId < :mine",
            "ExpressionAttributeValues": {":mine": {"S": message_id}},
        }

    def claim(self, key: str, now: float) -> bool:
        """Record `key` as seen (for requests that store no message, like a bot command); False if it was."""
        try:
            client("dynamodb").put_item(**self._first_time(key, {}, now))
        except ClientError as exc:
            if condition_failed(exc):
                return False
            raise
        return True

    def release(self, key: str) -> None:
        """Forget a claimed key whose work failed, so the sender's retry is not taken for a duplicate."""
        client("dynamodb").delete_item(TableName=self.tables.idempotency, Key={"id": {"S": key}})

    def _previous(self, key: str) -> Accepted:
        resp = client("dynamodb").get_item(
            TableName=self.tables.idempotency, Key={"id": {"S": key}}, ConsistentRead=True
        )
        item = codec.load(resp.get("Item")) or {}
        data = json.loads(item.get("data") or "{}")
        return Accepted(
            message_id=str(data.get("messageId", "")),
            conversation_id=str(data.get("conversationId", "")),
            duplicate=True,
        )
