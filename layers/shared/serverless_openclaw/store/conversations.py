"""Conversations table: conversation headers (`CONV#id`) and their messages (`MSG#id#ulid`), per user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from serverless_openclaw.aws.clients import client
from serverless_openclaw.conversations import Page
from serverless_openclaw.store import codec
from serverless_openclaw.store.ids import new_id

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import (
        AttributeValueTypeDef,
        QueryInputTypeDef,
        TransactWriteItemTypeDef,
        WriteRequestUnionTypeDef,
    )

TITLE_LENGTH = 80


def title_from(text: str) -> str:
    """A conversation title from its first message: the first line, shortened."""
    first_line = " ".join(text.strip().splitlines()[0].split()) if text.strip() else "New conversation"
    return first_line if len(first_line) <= TITLE_LENGTH else first_line[: TITLE_LENGTH - 1] + "…"


def header_update(
    table: str, user_id: str, conversation_id: str, title: str, now: float
) -> TransactWriteItemTypeDef:
    """Create-or-touch the conversation header (a TransactWriteItems `Update`)."""
    return {
        "Update": {
            "TableName": table,
            "Key": {"PK": {"S": f"USER#{user_id}"}, "SK": {"S": f"CONV#{conversation_id}"}},
            "UpdateExpression": "SET conversationId = :cid, title = if_not_exists(title, :title), "
            "createdAt = if_not_exists(createdAt, :now), updatedAt = :now",
            "ExpressionAttributeValues": codec.values(
                {":cid": conversation_id, ":title": title, ":now": now}
            ),
        }
    }


def message_item(
    user_id: str,
    conversation_id: str,
    message_id: str,
    role: str,
    content: str,
    channel: str,
    now: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, AttributeValueTypeDef]:
    """The DynamoDB item of one stored message."""
    return codec.dump(
        {
            "PK": f"USER#{user_id}",
            "SK": f"MSG#{conversation_id}#{message_id}",
            "messageId": message_id,
            "conversationId": conversation_id,
            "role": role,
            "content": content,
            "channel": channel,
            "createdAt": now,
            **(extra or {}),
        }
    )


def _public(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("PK", "SK", "ttl")}


class ConversationStore:
    """History for the web UI, across devices and channels."""

    def __init__(self, table: str) -> None:
        self.table = table

    def _page(self, user_id: str, prefix: str, limit: int, cursor: str | None) -> Page:
        pk = f"USER#{user_id}"
        params: QueryInputTypeDef = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": codec.values({":pk": pk, ":prefix": prefix}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            params["ExclusiveStartKey"] = codec.decode_cursor(cursor, pk=pk, sk_prefix=prefix)
        resp = client("dynamodb").query(**params)
        items = [_public(codec.load(raw) or {}) for raw in resp.get("Items", [])]
        return Page(items=items, next_cursor=codec.encode_cursor(resp.get("LastEvaluatedKey")))

    def conversations(self, user_id: str, limit: int = 50, cursor: str | None = None) -> Page:
        """The user's conversations, newest first."""
        return self._page(user_id, "CONV#", limit, cursor)

    def messages(
        self, user_id: str, conversation_id: str, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Messages of one conversation, newest first."""
        return self._page(user_id, f"MSG#{conversation_id}#", limit, cursor)

    def get(self, user_id: str, conversation_id: str) -> dict[str, Any] | None:
        """One conversation header, or None."""
        resp = client("dynamodb").get_item(
            TableName=self.table,
            Key={"PK": {"S": f"USER#{user_id}"}, "SK": {"S": f"CONV#{conversation_id}"}},
        )
        item = codec.load(resp.get("Item"))
        return _public(item) if item else None

    def add_message(
        self,
        user_id: str,
        conversation_id: str,
        role: str,
        content: str,
        channel: str,
        now: float,
        *,
        message_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Store one message (and touch its conversation); returns its id."""
        message_id = message_id or new_id()
        client("dynamodb").transact_write_items(
            TransactItems=[
                header_update(self.table, user_id, conversation_id, title_from(content), now),
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": message_item(
                            user_id, conversation_id, message_id, role, content, channel, now, extra
                        ),
                    }
                },
            ]
        )
        return message_id

    def reply_writes(
        self,
        user_id: str,
        conversation_id: str,
        message_id: str,
        content: str,
        channel: str,
        now: float,
        extra: Mapping[str, Any],
    ) -> list[TransactWriteItemTypeDef]:
        """The transaction items that store an assistant reply once (and touch its conversation).

        The row's `Put` is refused when the row exists: its id is derived from the message it answers,
        so a message is never answered twice in the history.
        """
        return [
            header_update(self.table, user_id, conversation_id, title_from(content), now),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": message_item(
                        user_id, conversation_id, message_id, "assistant", content, channel, now, extra
                    ),
                    "ConditionExpression": "attribute_not_exists(SK)",
                }
            },
        ]

    def message(self, user_id: str, conversation_id: str, message_id: str) -> dict[str, Any] | None:
        """One stored message (strongly consistent), or None."""
        resp = client("dynamodb").get_item(
            TableName=self.table,
            Key={"PK": {"S": f"USER#{user_id}"}, "SK": {"S": f"MSG#{conversation_id}#{message_id}"}},
            ConsistentRead=True,
        )
        item = codec.load(resp.get("Item"))
        return _public(item) if item else None

    def delete(self, user_id: str, conversation_id: str) -> bool:
        """Delete a conversation and all its messages; False when it does not exist."""
        if self.get(user_id, conversation_id) is None:
            return False
        pk = f"USER#{user_id}"
        keys: list[dict[str, AttributeValueTypeDef]] = []
        paginator = client("dynamodb").get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=codec.values({":pk": pk, ":prefix": f"MSG#{conversation_id}#"}),
            ProjectionExpression="PK, SK",
        ):
            keys.extend(page.get("Items", []))
        # Messages first, header last: an interrupted delete leaves a listable conversation to retry.
        keys.append({"PK": {"S": pk}, "SK": {"S": f"CONV#{conversation_id}"}})
        for start in range(0, len(keys), 25):
            requests: Mapping[str, Sequence[WriteRequestUnionTypeDef]] = {
                self.table: [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
            }
            while requests:
                resp = client("dynamodb").batch_write_item(RequestItems=requests)
                requests = resp.get("UnprocessedItems") or {}
        return True
