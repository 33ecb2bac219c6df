"""Settings table: the current value of each user setting (`SETTING#key`) and its history (`HIST#key#ts`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from serverless_openclaw.aws.clients import client
from serverless_openclaw.store import codec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

HISTORY_RETENTION_SECONDS = 365 * 24 * 3600


class SettingsStore:
    """Per-user settings with a change history."""

    def __init__(self, table: str) -> None:
        self.table = table

    def get_all(self, user_id: str) -> dict[str, Any]:
        """Every current setting of a user, by key."""
        resp = client("dynamodb").query(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=codec.values({":pk": f"USER#{user_id}", ":prefix": "SETTING#"}),
            ConsistentRead=True,
        )
        found: dict[str, Any] = {}
        for raw in resp.get("Items", []):
            item = codec.load(raw) or {}
            found[str(item["SK"]).removeprefix("SETTING#")] = item.get("value")
        return found

    def get(self, user_id: str, key: str) -> Any:
        """One current setting, or None."""
        resp = client("dynamodb").get_item(
            TableName=self.table,
            Key={"PK": {"S": f"USER#{user_id}"}, "SK": {"S": f"SETTING#{key}"}},
        )
        item = codec.load(resp.get("Item"))
        return item.get("value") if item else None

    def put(self, user_id: str, changes: Mapping[str, Any], now: float) -> None:
        """Write changed settings and one history entry each, atomically."""
        if not changes:
            return
        pk = f"USER#{user_id}"
        items: list[TransactWriteItemTypeDef] = []
        for key, val in changes.items():
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": codec.dump(
                            {"PK": pk, "SK": f"SETTING#{key}", "value": val, "updatedAt": now}
                        ),
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": codec.dump(
                            {
                                "PK": pk,
                                "SK": f"HIST#{key}#{now:017.6f}",
                                "value": val,
                                "changedAt": now,
                                "ttl": int(now) + HISTORY_RETENTION_SECONDS,
                            }
                        ),
                    }
                }
            )
        client("dynamodb").transact_write_items(TransactItems=items)

    def history(self, user_id: str, key: str, limit: int = 20) -> list[dict[str, Any]]:
        """Past values of one setting, newest first."""
        resp = client("dynamodb").query(
            TableName=self.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues=codec.values({":pk": f"USER#{user_id}", ":prefix": f"HIST#{key}#"}),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [
            {"value": item.get("value"), "changedAt": item.get("changedAt")}
            for item in (codec.load(raw) or {} for raw in resp.get("Items", []))
        ]
