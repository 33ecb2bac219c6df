"""Accepting a user message: dedup, history and queue written in ONE transaction, before anything else.

The Idempotency row (Powertools layout: `id`, `status`, `data`, `ttl` as the expiry attribute), the
conversation header, the stored user message and the Inbox item either all exist or none does, so a
retried request can never find "already seen" for a message that was not queued.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from serverless_openclaw.aws.clients import client
from serverless_openclaw.config import Tables
from serverless_openclaw.messages import Accepted, InboxItem, IncomingMessage
from serverless_openclaw.store import codec, conversations, inbox
from serverless_openclaw.store.conditions import condition_failed
from serverless_openclaw.store.ids import new_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import PutTypeDef, TransactWriteItemTypeDef

IDEMPOTENCY_TTL_SECONDS = 7 * 24 * 3600


class IntakeStore:
    """The one write path for new user messages."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def accept(self, message: IncomingMessage, now: float) -> Accepted:
        """Store the message in Conversations and the Inbox (once per idempotency key)."""
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
            items.append({"Put": self._first_time(message.idempotency_key, record, now)})
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
            # Only the Idempotency record (the first item) has a condition: failing it means "seen before".
            if message.idempotency_key and condition_failed(exc, item=0):
                return self._previous(message.idempotency_key)
            raise
        return Accepted(message_id=message_id, conversation_id=conversation_id)

    def _first_time(self, key: str, data: dict[str, Any], now: float) -> PutTypeDef:
        """The Put of an Idempotency record (Powertools layout) that fails if `key` was seen before."""
        return {
            "TableName": self.tables.idempotency,
            "Item": codec.dump(
                {
                    "id": key,
                    "status": "COMPLETED",
                    "data": json.dumps(data),
                    "ttl": int(now) + IDEMPOTENCY_TTL_SECONDS,
                }
            ),
            "ConditionExpression": "attribute_not_exists(id)",
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
