"""Connections table: who is connected to the WebSocket API, as a client (browser) or an agent (bridge)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from serverless_openclaw.aws.clients import client
from serverless_openclaw.connections import Connection, Kind
from serverless_openclaw.store import codec

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

CONNECTION_TTL_SECONDS = 3 * 3600
"""API Gateway closes WebSocket connections after 2 hours; rows outlive them a little, then expire."""


def _key(connection_id: str) -> dict[str, AttributeValueTypeDef]:
    return {"PK": {"S": f"CONN#{connection_id}"}}


def _from_item(item: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=str(item["PK"]).removeprefix("CONN#"),
        user_id=item["userId"],
        kind="agent" if item.get("kind") == "agent" else "client",
        connected_at=float(item.get("connectedAt", 0)),
        task_arn=item.get("taskArn"),
    )


class ConnectionStore:
    """Reads and writes of the Connections table and its byUser index."""

    def __init__(self, table: str) -> None:
        self.table = table

    def put(self, connection: Connection) -> None:
        """Record a new connection."""
        client("dynamodb").put_item(
            TableName=self.table,
            Item=codec.dump(
                {
                    "PK": f"CONN#{connection.connection_id}",
                    "userId": connection.user_id,
                    "kind": connection.kind,
                    "connectedAt": connection.connected_at,
                    "taskArn": connection.task_arn,
                    "ttl": int(connection.connected_at) + CONNECTION_TTL_SECONDS,
                }
            ),
        )

    def get(self, connection_id: str) -> Connection | None:
        """The connection, or None if it is unknown (closed, expired or never authorised)."""
        resp = client("dynamodb").get_item(TableName=self.table, Key=_key(connection_id), ConsistentRead=True)
        item = codec.load(resp.get("Item"))
        return _from_item(item) if item else None

    def delete(self, connection_id: str) -> Connection | None:
        """Remove a connection; returns what was removed."""
        resp = client("dynamodb").delete_item(
            TableName=self.table, Key=_key(connection_id), ReturnValues="ALL_OLD"
        )
        item = codec.load(resp.get("Attributes"))
        return _from_item(item) if item else None

    def for_user(self, user_id: str, kind: Kind = "client") -> list[Connection]:
        """The user's open connections of one kind, oldest first."""
        paginator = client("dynamodb").get_paginator("query")
        found: list[Connection] = []
        for page in paginator.paginate(
            TableName=self.table,
            IndexName="byUser",
            KeyConditionExpression="userId = :u",
            ExpressionAttributeValues=codec.values({":u": user_id}),
        ):
            for raw in page.get("Items", []):
                item = codec.load(raw)
                if item and item.get("kind", "client") == kind:
                    found.append(_from_item(item))
        return found
